//===- model_config_test.cpp - config.json parsing and validation ---------===//
//
// Parses the fixture configs (transformers 5 layout) and hand-written 4.x
// configs, checks every rejection names its key, and validates the fixture
// checkpoints (and broken copies of them) against their configs. The Qwen3.5
// tests at the end parse its two config kinds, list its tensors and check
// that the builder refuses it until the Gated DeltaNet ops exist.
//
//===----------------------------------------------------------------------===//

#include "frontends/safetensors/model_config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "frontends/safetensors/builder.h"
#include "frontends/safetensors/model_dir.h"
#include "mlir/IR/MLIRContext.h"
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
                        "LlamaForCausalLM, Qwen3ForCausalLM, "
                        "Qwen3_5ForConditionalGeneration, "
                        "Qwen3_5ForCausalLM)"));
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

//===----------------------------------------------------------------------===//
// Qwen3.5 (docs/qwen3_5.md)
//===----------------------------------------------------------------------===//

/// Qwen/Qwen3.5-0.8B config.json: the text model nested in `text_config`,
/// beside the vision tower's config.
const char *kQwen35Config08B = R"({
  "architectures": ["Qwen3_5ForConditionalGeneration"], "image_token_id": 248056,
  "model_type": "qwen3_5",
  "text_config": {
    "attention_bias": false, "attention_dropout": 0.0, "attn_output_gate": true,
    "dtype": "bfloat16", "eos_token_id": 248044, "full_attention_interval": 4,
    "head_dim": 256, "hidden_act": "silu", "hidden_size": 1024, "initializer_range": 0.02,
    "intermediate_size": 3584,
    "layer_types": [
      "linear_attention", "linear_attention", "linear_attention", "full_attention",
      "linear_attention", "linear_attention", "linear_attention", "full_attention",
      "linear_attention", "linear_attention", "linear_attention", "full_attention",
      "linear_attention", "linear_attention", "linear_attention", "full_attention",
      "linear_attention", "linear_attention", "linear_attention", "full_attention",
      "linear_attention", "linear_attention", "linear_attention", "full_attention"
    ],
    "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_num_key_heads": 16,
    "linear_num_value_heads": 16, "linear_value_head_dim": 128,
    "max_position_embeddings": 262144, "mlp_only_layers": [], "model_type": "qwen3_5_text",
    "mtp_num_hidden_layers": 1, "mtp_use_dedicated_embeddings": false,
    "num_attention_heads": 8, "num_hidden_layers": 24, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06, "tie_word_embeddings": true, "use_cache": true,
    "vocab_size": 248320, "mamba_ssm_dtype": "float32",
    "rope_parameters": {
      "mrope_interleaved": true, "mrope_section": [11, 11, 10], "rope_type": "default",
      "rope_theta": 10000000, "partial_rotary_factor": 0.25
    }
  },
  "tie_word_embeddings": true, "transformers_version": "4.57.0.dev0", "video_token_id": 248057,
  "vision_config": {
    "deepstack_visual_indexes": [], "depth": 12, "hidden_act": "gelu_pytorch_tanh",
    "hidden_size": 768, "in_channels": 3, "initializer_range": 0.02,
    "intermediate_size": 3072, "model_type": "qwen3_5", "num_heads": 12,
    "num_position_embeddings": 2304, "out_hidden_size": 1024, "patch_size": 16,
    "spatial_merge_size": 2, "temporal_patch_size": 2
  },
  "vision_end_token_id": 248054, "vision_start_token_id": 248053
})";

/// A Qwen3.5-9B text model in the flat Qwen3_5ForCausalLM form (the
/// reference's Qwen3_5TextConfig defaults are the 9B's sizes), without
/// layer_types: the default pattern applies.
const char *kQwen35Config9B = R"({
  "architectures": ["Qwen3_5ForCausalLM"], "model_type": "qwen3_5_text",
  "attention_bias": false, "attn_output_gate": true, "dtype": "bfloat16",
  "eos_token_id": 248044, "full_attention_interval": 4, "head_dim": 256,
  "hidden_act": "silu", "hidden_size": 4096, "intermediate_size": 12288,
  "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128, "linear_num_key_heads": 16,
  "linear_num_value_heads": 32, "linear_value_head_dim": 128,
  "max_position_embeddings": 262144, "num_attention_heads": 16,
  "num_hidden_layers": 32, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
  "tie_word_embeddings": false, "vocab_size": 248320,
  "rope_parameters": {"mrope_interleaved": true, "mrope_section": [11, 11, 10],
                      "rope_type": "default", "rope_theta": 10000000,
                      "partial_rotary_factor": 0.25}
})";

Json qwen35Nested() { return Json::parse(kQwen35Config08B); }
Json qwen35Flat() { return Json::parse(kQwen35Config9B); }

/// A 0.8B-like config whose `text_config.key` is `value` (null erases it).
Json withTextKey(const std::string &key, Json value,
                 Json config = qwen35Nested()) {
  if (value.is_null())
    config["text_config"].erase(key);
  else
    config["text_config"][key] = std::move(value);
  return config;
}

int64_t countLayers(const ModelConfig &config, LayerType type) {
  return std::count(config.layerTypes.begin(), config.layerTypes.end(), type);
}

TEST(Qwen35ConfigTest, ConditionalGeneration08B) {
  absl::StatusOr<ModelConfig> config =
      parseModelConfig(kQwen35Config08B, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, Architecture::Qwen3_5);
  EXPECT_EQ(architectureName(config->architecture), "Qwen3_5ForCausalLM");
  EXPECT_EQ(config->tensorPrefix, "model.language_model.");
  EXPECT_EQ(config->hiddenSize, 1024);
  EXPECT_EQ(config->numLayers, 24);
  EXPECT_EQ(config->numHeads, 8);
  EXPECT_EQ(config->numKvHeads, 2);
  EXPECT_EQ(config->headDim, 256);
  EXPECT_EQ(config->intermediateSize, 3584);
  EXPECT_EQ(config->vocabSize, 248320);
  EXPECT_EQ(config->maxPositionEmbeddings, 262144);
  EXPECT_DOUBLE_EQ(config->rmsNormEps, 1e-6);
  EXPECT_DOUBLE_EQ(config->ropeTheta, 1e7);
  EXPECT_FALSE(config->llama3Scaling.has_value());
  EXPECT_DOUBLE_EQ(config->partialRotaryFactor, 0.25);
  EXPECT_EQ(config->rotaryDim(), 64);
  EXPECT_EQ(config->mropeSection, (std::vector<int64_t>{11, 11, 10}));
  EXPECT_TRUE(config->mropeInterleaved);
  EXPECT_TRUE(config->tieWordEmbeddings);
  EXPECT_FALSE(config->attentionBias);
  EXPECT_TRUE(config->qkNorm);
  EXPECT_TRUE(config->attentionOutputGate);
  EXPECT_TRUE(config->rmsNormUnitOffset);
  EXPECT_EQ(config->dtype, DType::BF16);

  ASSERT_TRUE(config->gatedDeltaNet.has_value());
  const GatedDeltaNetConfig &linear = *config->gatedDeltaNet;
  EXPECT_EQ(linear.numKeyHeads, 16);
  EXPECT_EQ(linear.numValueHeads, 16);
  EXPECT_EQ(linear.keyHeadDim, 128);
  EXPECT_EQ(linear.valueHeadDim, 128);
  EXPECT_EQ(linear.convKernelSize, 4);
  EXPECT_EQ(linear.keyDim(), 2048);
  EXPECT_EQ(linear.valueDim(), 2048);
  EXPECT_EQ(linear.convDim(), 6144);

  ASSERT_EQ(config->layerTypes.size(), 24u);
  EXPECT_EQ(countLayers(*config, LayerType::LinearAttention), 18);
  EXPECT_EQ(countLayers(*config, LayerType::FullAttention), 6);
  EXPECT_EQ(config->layerType(0), LayerType::LinearAttention);
  EXPECT_EQ(config->layerType(3), LayerType::FullAttention);
  EXPECT_EQ(config->layerType(23), LayerType::FullAttention);
  EXPECT_EQ(layerTypeName(LayerType::FullAttention), "full_attention");
  EXPECT_EQ(layerTypeName(LayerType::LinearAttention), "linear_attention");

  // The vision tower and the MTP head are left out, with a note each.
  ASSERT_EQ(config->notes.size(), 2u);
  EXPECT_THAT(config->notes[0],
              HasSubstr("config.json: 'vision_config' ignored: the vision "
                        "tower (12 blocks) is not compiled"));
  EXPECT_THAT(config->notes[1],
              HasSubstr("'text_config.mtp_num_hidden_layers' is 1: the "
                        "multi-token-prediction layers (mtp.*) are not used"));
}

TEST(Qwen35ConfigTest, CausalLM9BWithTheDefaultLayerPattern) {
  absl::StatusOr<ModelConfig> config =
      parseModelConfig(kQwen35Config9B, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->architecture, Architecture::Qwen3_5);
  EXPECT_EQ(config->tensorPrefix, "model.");
  EXPECT_EQ(config->hiddenSize, 4096);
  EXPECT_EQ(config->numLayers, 32);
  EXPECT_EQ(config->numHeads, 16);
  EXPECT_EQ(config->numKvHeads, 4);
  EXPECT_EQ(config->intermediateSize, 12288);
  EXPECT_FALSE(config->tieWordEmbeddings);
  EXPECT_TRUE(config->notes.empty());
  ASSERT_TRUE(config->gatedDeltaNet.has_value());
  EXPECT_EQ(config->gatedDeltaNet->numValueHeads, 32);
  EXPECT_EQ(config->gatedDeltaNet->convDim(), 8192);
  // Every 4th layer (3, 7, ...) is full attention.
  ASSERT_EQ(config->layerTypes.size(), 32u);
  for (int64_t i = 0; i < 32; ++i)
    EXPECT_EQ(config->layerType(i), i % 4 == 3 ? LayerType::FullAttention
                                               : LayerType::LinearAttention)
        << "layer " << i;

  // full_attention_interval defaults to 4 when absent too.
  Json noInterval = qwen35Flat();
  noInterval.erase("full_attention_interval");
  config = parse(noInterval);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(countLayers(*config, LayerType::FullAttention), 8);
  EXPECT_EQ(config->layerType(31), LayerType::FullAttention);
}

TEST(Qwen35ConfigTest, LayerPatterns) {
  Json interval2 = qwen35Flat();
  interval2["full_attention_interval"] = 2;
  interval2["num_hidden_layers"] = 6;
  absl::StatusOr<ModelConfig> config = parse(interval2);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->layerTypes,
            (std::vector<LayerType>{
                LayerType::LinearAttention, LayerType::FullAttention,
                LayerType::LinearAttention, LayerType::FullAttention,
                LayerType::LinearAttention, LayerType::FullAttention}));

  // Explicit layer_types win over the interval; "attention" and "mamba" are
  // the reference's legacy spellings.
  Json explicitTypes = qwen35Flat();
  explicitTypes["num_hidden_layers"] = 4;
  explicitTypes["layer_types"] = {"full_attention", "mamba", "attention",
                                  "linear_attention"};
  config = parse(explicitTypes);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->layerTypes,
            (std::vector<LayerType>{
                LayerType::FullAttention, LayerType::LinearAttention,
                LayerType::FullAttention, LayerType::LinearAttention}));
}

TEST(Qwen35ConfigTest, RopeDefaultsAndPlacement) {
  // partial_rotary_factor defaults to 0.25 as in the reference; rope_theta
  // and the factor may sit beside rope_parameters.
  Json beside = qwen35Flat();
  beside["rope_parameters"] = {{"rope_type", "default"}};
  beside["rope_theta"] = 5000000.0;
  absl::StatusOr<ModelConfig> config = parse(beside);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_DOUBLE_EQ(config->ropeTheta, 5e6);
  EXPECT_DOUBLE_EQ(config->partialRotaryFactor, 0.25);
  EXPECT_EQ(config->mropeSection, (std::vector<int64_t>{11, 11, 10}));
  EXPECT_FALSE(config->mropeInterleaved);

  beside["partial_rotary_factor"] = 0.5;
  config = parse(beside);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->rotaryDim(), 128);

  // The same values in both places are fine.
  Json both = qwen35Nested();
  both["text_config"]["partial_rotary_factor"] = 0.25;
  both["text_config"]["rope_theta"] = 10000000;
  EXPECT_TRUE(parse(both).ok());
  // tie_word_embeddings only at the top level still counts.
  EXPECT_TRUE(
      parse(withTextKey("tie_word_embeddings", nullptr))->tieWordEmbeddings);
  // No MTP layers: no note about them.
  absl::StatusOr<ModelConfig> noMtp =
      parse(withTextKey("mtp_num_hidden_layers", 0));
  ASSERT_TRUE(noMtp.ok()) << noMtp.status();
  EXPECT_EQ(noMtp->notes.size(), 1u); // the vision tower's
  // dtype from the wrapper when text_config has none.
  Json topDtype = withTextKey("dtype", nullptr);
  topDtype["torch_dtype"] = "float16";
  EXPECT_EQ(parse(topDtype)->dtype, DType::F16);
}

TEST(Qwen35ConfigRejectTest, UnsupportedValues) {
  EXPECT_THAT(configError(withTextKey("hidden_act", "gelu")),
              HasSubstr("config.json: unsupported 'text_config.hidden_act' "
                        "'gelu' (only silu is supported)"));
  Json flatGelu = qwen35Flat();
  flatGelu["hidden_act"] = "gelu";
  EXPECT_THAT(configError(flatGelu),
              HasSubstr("unsupported 'hidden_act' 'gelu'"));
  EXPECT_THAT(configError(withTextKey("attention_bias", true)),
              HasSubstr("'text_config.attention_bias' is true: biases on the "
                        "q/k/v/o projections are not supported"));
  EXPECT_THAT(configError(withTextKey("attn_output_gate", false)),
              HasSubstr("'text_config.attn_output_gate' is false"));
  EXPECT_THAT(configError(withTextKey("model_type", "qwen3_5_moe_text")),
              HasSubstr("'text_config.model_type' is 'qwen3_5_moe_text', "
                        "expected 'qwen3_5_text'"));
  Json wrongType = qwen35Nested();
  wrongType["model_type"] = "qwen3_5_moe";
  EXPECT_THAT(configError(wrongType),
              HasSubstr("'model_type' is 'qwen3_5_moe' but "
                        "Qwen3_5ForConditionalGeneration has model type "
                        "'qwen3_5'"));
  Json noText = qwen35Nested();
  noText.erase("text_config");
  EXPECT_THAT(configError(noText),
              HasSubstr("missing required key 'text_config'"));
  Json textNotObject = qwen35Nested();
  textNotObject["text_config"] = Json::array();
  EXPECT_THAT(configError(textNotObject),
              HasSubstr("'text_config' must be an object, got an array"));
  Json untiedText = withTextKey("tie_word_embeddings", false);
  EXPECT_THAT(configError(untiedText),
              HasSubstr("'tie_word_embeddings' is true but "
                        "'text_config.tie_word_embeddings' is false"));
  EXPECT_THAT(configError(withTextKey("linear_num_value_heads", 24)),
              HasSubstr("'text_config.linear_num_value_heads' 24 is not "
                        "divisible by 'text_config.linear_num_key_heads' 16"));
  EXPECT_THAT(configError(withTextKey("num_key_value_heads", 3)),
              HasSubstr("'text_config.num_attention_heads' 8 is not "
                        "divisible by 'text_config.num_key_value_heads' 3"));
  EXPECT_THAT(configError(withTextKey("eos_token_id", 248320)),
              HasSubstr("'eos_token_id' is 248320, outside the vocabulary"));
}

TEST(Qwen35ConfigRejectTest, MissingFields) {
  for (const char *key : {"linear_conv_kernel_dim", "linear_key_head_dim",
                          "linear_value_head_dim", "linear_num_key_heads",
                          "linear_num_value_heads", "head_dim",
                          "num_key_value_heads", "hidden_size", "rms_norm_eps"})
    EXPECT_THAT(configError(withTextKey(key, nullptr)),
                HasSubstr(std::string("config.json: missing required key "
                                      "'text_config.") +
                          key + "'"));
  Json flat = qwen35Flat();
  flat.erase("linear_key_head_dim");
  EXPECT_THAT(configError(flat),
              HasSubstr("missing required key 'linear_key_head_dim'"));
  EXPECT_THAT(configError(withTextKey("linear_conv_kernel_dim", 0)),
              HasSubstr("'text_config.linear_conv_kernel_dim' must be a "
                        "positive integer, got 0"));
}

TEST(Qwen35ConfigRejectTest, LayerTypes) {
  Json unknown = qwen35Nested();
  unknown["text_config"]["layer_types"][5] = "sliding_attention";
  EXPECT_THAT(configError(unknown),
              HasSubstr("'text_config.layer_types'[5] is a string "
                        "\"sliding_attention\": expected full_attention or "
                        "linear_attention"));
  Json shorter = qwen35Nested();
  shorter["text_config"]["layer_types"].erase(0);
  EXPECT_THAT(configError(shorter),
              HasSubstr("'text_config.layer_types' has 23 entries but "
                        "'text_config.num_hidden_layers' is 24"));
  EXPECT_THAT(configError(withTextKey("layer_types", "linear_attention")),
              HasSubstr("'text_config.layer_types' must be a list, got a "
                        "string"));
  Json flat = qwen35Flat();
  flat["layer_types"] = {"full_attention"};
  EXPECT_THAT(configError(flat), HasSubstr("'layer_types' has 1 entries but "
                                           "'num_hidden_layers' is 32"));
}

TEST(Qwen35ConfigRejectTest, Rope) {
  Json yarn = qwen35Nested();
  yarn["text_config"]["rope_parameters"]["rope_type"] = "yarn";
  EXPECT_THAT(configError(yarn),
              HasSubstr("unsupported rope type 'yarn' in "
                        "'text_config.rope_parameters' (supported for "
                        "Qwen3.5: default)"));
  Json extraKey = qwen35Nested();
  extraKey["text_config"]["rope_parameters"]["factor"] = 4.0;
  EXPECT_THAT(configError(extraKey),
              HasSubstr("unsupported key 'text_config.rope_parameters.factor' "
                        "for rope type 'default'"));
  Json badSection = qwen35Nested();
  badSection["text_config"]["rope_parameters"]["mrope_section"] = {11, 21};
  EXPECT_THAT(configError(badSection),
              HasSubstr("'text_config.rope_parameters.mrope_section' must be "
                        "a list of 3 non-negative integers"));
  Json conflict = withTextKey("rope_theta", 1000.0);
  EXPECT_THAT(configError(conflict),
              HasSubstr("'text_config.rope_theta' is 1000 but "
                        "'text_config.rope_parameters.rope_theta' is 1e+07"));
  Json noTheta = qwen35Nested();
  noTheta["text_config"]["rope_parameters"].erase("rope_theta");
  EXPECT_THAT(configError(noTheta),
              HasSubstr("missing 'text_config.rope_theta'"));
  Json tooLarge = qwen35Nested();
  tooLarge["text_config"]["rope_parameters"]["partial_rotary_factor"] = 1.5;
  EXPECT_THAT(configError(tooLarge),
              HasSubstr("'text_config.partial_rotary_factor' is 1.5"));
  // 256 x 0.02 truncates to 5, as the reference's int() would.
  Json odd = qwen35Nested();
  odd["text_config"]["rope_parameters"]["partial_rotary_factor"] = 0.02;
  EXPECT_THAT(configError(odd),
              HasSubstr("gives 5 rotary dimensions; RoPE needs a positive "
                        "even number"));
}

TEST(Qwen35RequiredTensorsTest, ConditionalGeneration08B) {
  absl::StatusOr<ModelConfig> config =
      parseModelConfig(kQwen35Config08B, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  std::vector<RequiredTensor> tensors = requiredTensors(*config);
  // Embedding, 18 linear layers x 14, 6 full layers x 11, final norm; tied.
  EXPECT_EQ(tensors.size(), 1u + 18 * 14 + 6 * 11 + 1);
  EXPECT_EQ(tensors.front().name, "model.language_model.embed_tokens.weight");
  EXPECT_EQ(tensors.front().shape, (std::vector<int64_t>{248320, 1024}));
  EXPECT_EQ(tensors.back().name, "model.language_model.norm.weight");
  for (const RequiredTensor &tensor : tensors)
    EXPECT_EQ(tensor.name.rfind("model.language_model.", 0), 0u) << tensor.name;

  auto shapeOf = [&](const std::string &name) {
    const RequiredTensor *tensor =
        findRequired(tensors, "model.language_model.layers." + name);
    return tensor ? tensor->shape : std::vector<int64_t>{-1};
  };
  using Shape = std::vector<int64_t>;
  EXPECT_EQ(shapeOf("0.input_layernorm.weight"), (Shape{1024}));
  EXPECT_EQ(shapeOf("0.linear_attn.in_proj_qkv.weight"), (Shape{6144, 1024}));
  EXPECT_EQ(shapeOf("0.linear_attn.in_proj_z.weight"), (Shape{2048, 1024}));
  EXPECT_EQ(shapeOf("0.linear_attn.in_proj_b.weight"), (Shape{16, 1024}));
  EXPECT_EQ(shapeOf("0.linear_attn.in_proj_a.weight"), (Shape{16, 1024}));
  EXPECT_EQ(shapeOf("0.linear_attn.conv1d.weight"), (Shape{6144, 1, 4}));
  EXPECT_EQ(shapeOf("0.linear_attn.dt_bias"), (Shape{16}));
  EXPECT_EQ(shapeOf("0.linear_attn.A_log"), (Shape{16}));
  EXPECT_EQ(shapeOf("0.linear_attn.norm.weight"), (Shape{128}));
  EXPECT_EQ(shapeOf("0.linear_attn.out_proj.weight"), (Shape{1024, 2048}));
  EXPECT_EQ(shapeOf("0.post_attention_layernorm.weight"), (Shape{1024}));
  EXPECT_EQ(shapeOf("0.mlp.gate_proj.weight"), (Shape{3584, 1024}));
  EXPECT_EQ(shapeOf("0.mlp.down_proj.weight"), (Shape{1024, 3584}));
  // q_proj: 8 heads x (256 query + 256 gate).
  EXPECT_EQ(shapeOf("3.self_attn.q_proj.weight"), (Shape{4096, 1024}));
  EXPECT_EQ(shapeOf("3.self_attn.k_proj.weight"), (Shape{512, 1024}));
  EXPECT_EQ(shapeOf("3.self_attn.v_proj.weight"), (Shape{512, 1024}));
  EXPECT_EQ(shapeOf("3.self_attn.o_proj.weight"), (Shape{1024, 2048}));
  EXPECT_EQ(shapeOf("3.self_attn.q_norm.weight"), (Shape{256}));
  EXPECT_EQ(shapeOf("3.self_attn.k_norm.weight"), (Shape{256}));
  // Each layer has only its own mixer's tensors, and no biases.
  EXPECT_EQ(shapeOf("0.self_attn.q_proj.weight"), (Shape{-1}));
  EXPECT_EQ(shapeOf("3.linear_attn.A_log"), (Shape{-1}));
  EXPECT_EQ(shapeOf("3.self_attn.q_proj.bias"), (Shape{-1}));

  int linearTensors = 0, attentionTensors = 0;
  for (const RequiredTensor &tensor : tensors) {
    linearTensors += tensor.name.find(".linear_attn.") != std::string::npos;
    attentionTensors += tensor.name.find(".self_attn.") != std::string::npos;
  }
  EXPECT_EQ(linearTensors, 18 * 9);
  EXPECT_EQ(attentionTensors, 6 * 6);
}

TEST(Qwen35RequiredTensorsTest, CausalLM9BUntied) {
  absl::StatusOr<ModelConfig> config =
      parseModelConfig(kQwen35Config9B, "config.json");
  ASSERT_TRUE(config.ok()) << config.status();
  std::vector<RequiredTensor> tensors = requiredTensors(*config);
  EXPECT_EQ(tensors.size(), 1u + 24 * 14 + 8 * 11 + 1 + 1);
  EXPECT_EQ(tensors.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(tensors.back().name, "lm_head.weight");
  EXPECT_EQ(tensors.back().shape, (std::vector<int64_t>{248320, 4096}));
  const RequiredTensor *qkv =
      findRequired(tensors, "model.layers.0.linear_attn.in_proj_qkv.weight");
  ASSERT_NE(qkv, nullptr);
  EXPECT_EQ(qkv->shape, (std::vector<int64_t>{8192, 4096}));
  const RequiredTensor *z =
      findRequired(tensors, "model.layers.0.linear_attn.in_proj_z.weight");
  ASSERT_NE(z, nullptr);
  EXPECT_EQ(z->shape, (std::vector<int64_t>{4096, 4096}));
  const RequiredTensor *a =
      findRequired(tensors, "model.layers.1.linear_attn.in_proj_a.weight");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{32, 4096}));
  const RequiredTensor *q =
      findRequired(tensors, "model.layers.7.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->shape, (std::vector<int64_t>{8192, 4096}));
  const RequiredTensor *o =
      findRequired(tensors, "model.layers.31.self_attn.o_proj.weight");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->shape, (std::vector<int64_t>{4096, 4096}));
}

/// A tiny Qwen3.5 (`nested`: Qwen3_5ForConditionalGeneration) of 4 layers,
/// 3 linear + 1 full.
Json tinyQwen35(bool nested) {
  Json text = Json::parse(R"({
    "model_type": "qwen3_5_text", "hidden_size": 32, "intermediate_size": 48,
    "num_hidden_layers": 4, "num_attention_heads": 2, "num_key_value_heads": 1,
    "head_dim": 16, "rms_norm_eps": 1e-06, "vocab_size": 64,
    "max_position_embeddings": 128, "tie_word_embeddings": false,
    "linear_conv_kernel_dim": 4, "linear_key_head_dim": 8,
    "linear_value_head_dim": 8, "linear_num_key_heads": 2,
    "linear_num_value_heads": 4, "dtype": "bfloat16",
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000000,
                        "partial_rotary_factor": 0.25,
                        "mrope_section": [1, 1, 0], "mrope_interleaved": true}
  })");
  if (!nested) {
    text["architectures"] = {"Qwen3_5ForCausalLM"};
    return text;
  }
  return Json{{"architectures", {"Qwen3_5ForConditionalGeneration"}},
              {"model_type", "qwen3_5"},
              {"text_config", text},
              {"tie_word_embeddings", false},
              {"vision_config", {{"depth", 2}}}};
}

/// Writes DIR/config.json and DIR/model.safetensors holding zeroed bf16
/// tensors of the given names and shapes.
void writeCheckpoint(const std::string &dir, const Json &config,
                     const std::vector<RequiredTensor> &tensors) {
  writeFile(dir + "/config.json", config.dump());
  Json header = Json::object();
  uint64_t offset = 0;
  for (const RequiredTensor &tensor : tensors) {
    uint64_t bytes = 2;
    for (int64_t dim : tensor.shape)
      bytes *= static_cast<uint64_t>(dim);
    header[tensor.name] = {{"dtype", "BF16"},
                           {"shape", tensor.shape},
                           {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  std::string prefix(8, '\0');
  for (int i = 0; i < 8; ++i)
    prefix[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  writeFile(dir + "/model.safetensors",
            prefix + text + std::string(offset, '\0'));
}

// Tests that a checkpoint holding exactly the text model's tensors, plus a
// vision tower and an MTP head, validates under both prefixes, and that a
// missing or misshapen Gated DeltaNet tensor is reported by name.
TEST(Qwen35ValidateTest, Checkpoints) {
  for (bool nested : {true, false}) {
    SCOPED_TRACE(nested ? "nested" : "flat");
    Json json = tinyQwen35(nested);
    absl::StatusOr<ModelConfig> config = parse(json);
    ASSERT_TRUE(config.ok()) << config.status();
    std::vector<RequiredTensor> tensors = requiredTensors(*config);
    std::string prefix = nested ? "model.language_model." : "model.";
    ASSERT_NE(
        findRequired(tensors, prefix + "layers.2.linear_attn.conv1d.weight"),
        nullptr);
    std::vector<RequiredTensor> stored = tensors;
    stored.push_back({"model.visual.blocks.0.attn.qkv.weight", {6, 2}});
    stored.push_back({"mtp.fc.weight", {32, 64}});
    std::string dir = freshTempDir() + (nested ? "/nested" : "/flat");
    fs::create_directories(dir);
    writeCheckpoint(dir, json, stored);
    absl::StatusOr<ModelConfig> loaded = loadModelConfig(dir);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    absl::StatusOr<std::unique_ptr<Checkpoint>> checkpoint =
        Checkpoint::open(dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    EXPECT_TRUE(validateCheckpoint(*loaded, **checkpoint).ok())
        << validateCheckpoint(*loaded, **checkpoint);

    // Break one tensor of a linear layer and drop one of the full layer.
    std::vector<RequiredTensor> broken;
    for (RequiredTensor tensor : tensors) {
      if (tensor.name == prefix + "layers.3.self_attn.q_norm.weight")
        continue;
      if (tensor.name == prefix + "layers.1.linear_attn.conv1d.weight")
        tensor.shape = {64, 4};
      broken.push_back(tensor);
    }
    writeCheckpoint(dir, json, broken);
    checkpoint = Checkpoint::open(dir);
    ASSERT_TRUE(checkpoint.ok()) << checkpoint.status();
    std::string message = messageOf(validateCheckpoint(*loaded, **checkpoint));
    EXPECT_THAT(message, HasSubstr("tensor '" + prefix +
                                   "layers.1.linear_attn.conv1d.weight' has "
                                   "shape [64, 4], expected [64, 1, 4]"));
    EXPECT_THAT(message, HasSubstr("missing tensor '" + prefix +
                                   "layers.3.self_attn.q_norm.weight' "
                                   "(expected shape [16])"));
  }
}

// Tests that compiling a Qwen3.5 model fails with Unimplemented naming the
// missing Gated DeltaNet layers, with or without a checkpoint.
TEST(Qwen35BuilderTest, RefusesUntilTheIrOpsExist) {
  absl::StatusOr<ModelConfig> config = parse(tinyQwen35(true));
  ASSERT_TRUE(config.ok()) << config.status();
  mlir::MLIRContext context;
  auto module = buildModule(context, *config, nullptr);
  ASSERT_FALSE(module.ok());
  EXPECT_EQ(module.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(messageOf(module.status()),
              HasSubstr("Gated DeltaNet (linear_attention) layers and gated "
                        "attention have no treni IR ops (issue 18"));

  std::string dir = freshTempDir();
  Json json = tinyQwen35(false);
  writeCheckpoint(dir, json, requiredTensors(*parse(json)));
  absl::StatusOr<std::shared_ptr<const ModelDir>> opened = openModelDir(dir);
  ASSERT_TRUE(opened.ok()) << opened.status();
  absl::StatusOr<LoadedModel> loaded = loadModelDir(context, **opened);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(messageOf(loaded.status()), HasSubstr("issue 18"));
}

} // namespace
} // namespace treni
