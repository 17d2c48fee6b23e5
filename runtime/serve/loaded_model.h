//===- loaded_model.h - what `run`, `chat` and `serve` load -----*- C++ -*-===//
//
// A model directory (or a package) becomes an Engine plus the text side the
// Generator and the chat front ends need: the tokenizer, the chat template
// and the EOS ids of the tokenizer and generation configs.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/text/tokenizer.h"

namespace treni {

class ChatTemplate;
class Progress;

/// EOS ids of a model directory: the tokenizer's eos_token (from
/// tokenizer_config.json) and generation_config.json's eos_token_id (a number
/// or a list). Missing files are fine; unreadable JSON, or an eos_token_id
/// that is not ids of the vocabulary (eosTokenIds), is an error.
absl::StatusOr<std::vector<int32_t>> readEosIds(const std::string &modelDir,
                                                const Tokenizer &tokenizer);

/// Everything `run`, `chat` and `serve` load for a model.
struct LoadedModel {
  std::unique_ptr<Engine> engine;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<ChatTemplate> chatTemplate; ///< null when there is none
  std::string chatTemplateSource;             ///< its Jinja text
  std::vector<int32_t> eosIds;
  std::string tokenizerDir;
  LoadedModel();
  LoadedModel(LoadedModel &&);
  LoadedModel &operator=(LoadedModel &&);
  ~LoadedModel();
};

struct LoadOptions {
  EngineOptions engine;
  /// Where tokenizer.json and tokenizer_config.json are; default: the model
  /// directory (a package's recorded checkpoint directory).
  std::string tokenizerDir;
  /// A chat template instead of tokenizer_config.json's: a .json file with
  /// a `chat_template` field, or a Jinja text file.
  std::string chatTemplateFile;
  Progress *progress = nullptr; ///< announces the steps (3)
};

/// Loads the tokenizer, the chat template and the engine (compiling on
/// first load). A model without a chat template loads (chatTemplate null).
absl::StatusOr<LoadedModel> loadModel(const std::string &model,
                                      const LoadOptions &options);

} // namespace treni
