//===- loaded_model.cpp - tokenizer, chat template, EOS ids, engine -------===//

#include "runtime/serve/loaded_model.h"

#include <algorithm>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "frontends/safetensors/model_config.h"
#include "nlohmann/json.hpp"
#include "runtime/exec/package.h"
#include "runtime/serve/progress.h"
#include "runtime/text/chat_template.h"
#include "support/file.h"
#include "support/json_bounded.h"
#include "support/status.h"

namespace treni {
namespace fs = std::filesystem;

namespace {

/// The JSON of `path`; nullopt when the file does not exist or cannot be
/// read, an error when it is not JSON.
absl::StatusOr<std::optional<nlohmann::json>>
readJsonFile(const std::string &path) {
  if (!std::filesystem::exists(path))
    return std::optional<nlohmann::json>();
  // A model directory is outside input: regular files of a sane size only
  // (a FIFO would block), JSON nested at most kMaxJsonDepth deep.
  TRENI_ASSIGN_OR_RETURN(std::string text,
                         readRegularFile(path, size_t{64} << 20));
  absl::StatusOr<nlohmann::json> json = parseJsonBounded(text);
  if (!json.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not valid JSON: ", json.status().message()));
  return std::optional<nlohmann::json>(*std::move(json));
}

/// A tokenizer_config.json special-token field: a string or {"content"}.
std::string tokenField(const nlohmann::json &config, const char *name) {
  if (!config.is_object() || !config.contains(name))
    return "";
  const nlohmann::json &value = config[name];
  if (value.is_string())
    return value.get<std::string>();
  if (value.is_object() && value.contains("content") &&
      value["content"].is_string())
    return value["content"].get<std::string>();
  return "";
}

/// The template text of a chat_template field (a string, or a list of named
/// templates: "default").
std::string templateText(const nlohmann::json &config) {
  if (!config.is_object() || !config.contains("chat_template"))
    return "";
  const nlohmann::json &value = config["chat_template"];
  if (value.is_string())
    return value.get<std::string>();
  if (value.is_array())
    for (const nlohmann::json &entry : value)
      if (entry.is_object() && entry.value("name", "") == "default" &&
          entry.contains("template") && entry["template"].is_string())
        return entry["template"].get<std::string>();
  return "";
}

/// The tokenizer directory: the option, else the model directory, else the
/// checkpoint directory a package recorded.
absl::StatusOr<std::string> tokenizerDirOf(const std::string &model,
                                           const LoadOptions &options) {
  if (!options.tokenizerDir.empty())
    return options.tokenizerDir;
  if (fs::is_directory(model))
    return model;
  TRENI_ASSIGN_OR_RETURN(Package package, readPackage(model));
  return package.modelDir;
}

/// Step 1: the tokenizer and the EOS ids.
absl::Status loadTokenizer(const std::string &model, const LoadOptions &options,
                           LoadedModel &loaded) {
  TRENI_ASSIGN_OR_RETURN(loaded.tokenizerDir, tokenizerDirOf(model, options));
  std::string tokenizerPath =
      (fs::path(loaded.tokenizerDir) / "tokenizer.json").string();
  if (!fs::exists(tokenizerPath))
    return absl::NotFoundError(absl::StrCat("no tokenizer.json in ",
                                            loaded.tokenizerDir,
                                            " (use --tokenizer DIR)"));
  TRENI_ASSIGN_OR_RETURN(loaded.tokenizer, Tokenizer::fromFile(tokenizerPath));
  TRENI_ASSIGN_OR_RETURN(loaded.eosIds,
                         readEosIds(loaded.tokenizerDir, *loaded.tokenizer));
  return absl::OkStatus();
}

/// Step 2, with --chat-template FILE: a .json file's chat_template field,
/// or the file's text as the template (the BOS/EOS tokens it may name come
/// from the model's tokenizer_config.json).
absl::Status loadChatTemplateFile(const std::string &file,
                                  const nlohmann::json &tokenizerConfig,
                                  LoadedModel &loaded) {
  absl::StatusOr<std::string> text = readRegularFile(file, size_t{64} << 20);
  if (!text.ok())
    return absl::NotFoundError(
        absl::StrCat("cannot read --chat-template ", text.status().message()));
  if (file.size() > 5 && file.substr(file.size() - 5) == ".json") {
    absl::StatusOr<nlohmann::json> other = parseJsonBounded(*text);
    if (!other.ok())
      return absl::InvalidArgumentError(
          absl::StrCat(file, " is not valid JSON: ", other.status().message()));
    loaded.chatTemplateSource = templateText(*other);
    TRENI_ASSIGN_OR_RETURN(loaded.chatTemplate,
                           ChatTemplate::fromTokenizerConfig(file));
    return absl::OkStatus();
  }
  loaded.chatTemplateSource = *text;
  TRENI_ASSIGN_OR_RETURN(
      loaded.chatTemplate,
      ChatTemplate::fromSource(*text, tokenField(tokenizerConfig, "bos_token"),
                               tokenField(tokenizerConfig, "eos_token")));
  return absl::OkStatus();
}

/// Step 2: the chat template (the option's file, else tokenizer_config.json's
/// when it has one).
absl::Status loadChatTemplate(const LoadOptions &options, LoadedModel &loaded) {
  std::string configPath =
      (fs::path(loaded.tokenizerDir) / "tokenizer_config.json").string();
  TRENI_ASSIGN_OR_RETURN(auto config, readJsonFile(configPath));
  nlohmann::json tokenizerConfig = config ? *config : nlohmann::json::object();
  if (!options.chatTemplateFile.empty())
    return loadChatTemplateFile(options.chatTemplateFile, tokenizerConfig,
                                loaded);
  if (!templateText(tokenizerConfig).empty()) {
    loaded.chatTemplateSource = templateText(tokenizerConfig);
    TRENI_ASSIGN_OR_RETURN(loaded.chatTemplate,
                           ChatTemplate::fromTokenizerConfig(configPath));
  }
  return absl::OkStatus();
}

/// Step 3: the engine, and a check that the EOS ids fit its vocabulary.
absl::Status loadCheckedEngine(const std::string &model,
                               const LoadOptions &options,
                               LoadedModel &loaded) {
  TRENI_ASSIGN_OR_RETURN(loaded.engine, loadEngine(model, options.engine));
  if (loaded.engine->vocabSize() < loaded.tokenizer->vocabSize() &&
      !loaded.eosIds.empty())
    for (int32_t id : loaded.eosIds)
      if (id >= loaded.engine->vocabSize())
        return absl::InvalidArgumentError(absl::StrCat(
            "EOS id ", id, " is outside the model's vocabulary (",
            loaded.engine->vocabSize(), "): tokenizer and model do not match"));
  return absl::OkStatus();
}

} // namespace

absl::StatusOr<std::vector<int32_t>> readEosIds(const std::string &modelDir,
                                                const Tokenizer &tokenizer) {
  std::vector<int32_t> ids;
  auto add = [&](int64_t id) {
    if (id >= 0 && id < tokenizer.vocabSize() &&
        std::find(ids.begin(), ids.end(), int32_t(id)) == ids.end())
      ids.push_back(int32_t(id));
  };
  TRENI_ASSIGN_OR_RETURN(
      auto config,
      readJsonFile((fs::path(modelDir) / "tokenizer_config.json").string()));
  if (config && config->is_object() && config->contains("eos_token")) {
    if (std::optional<int32_t> id =
            tokenizer.tokenToId(tokenField(*config, "eos_token")))
      add(*id);
  }
  std::string generationPath =
      (fs::path(modelDir) / "generation_config.json").string();
  TRENI_ASSIGN_OR_RETURN(auto generation, readJsonFile(generationPath));
  if (generation && generation->is_object() &&
      generation->contains("eos_token_id")) {
    TRENI_ASSIGN_OR_RETURN(std::vector<int32_t> generationIds,
                           eosTokenIds((*generation)["eos_token_id"],
                                       generationPath, tokenizer.vocabSize()));
    for (int32_t id : generationIds)
      add(id);
  }
  return ids;
}

LoadedModel::LoadedModel() = default;
LoadedModel::LoadedModel(LoadedModel &&) = default;
LoadedModel &LoadedModel::operator=(LoadedModel &&) = default;
LoadedModel::~LoadedModel() = default;

absl::StatusOr<LoadedModel> loadModel(const std::string &model,
                                      const LoadOptions &options) {
  LoadedModel loaded;
  if (options.progress)
    options.progress->step("tokenizer");
  TRENI_RETURN_IF_ERROR(loadTokenizer(model, options, loaded));
  if (options.progress)
    options.progress->step("chat template");
  TRENI_RETURN_IF_ERROR(loadChatTemplate(options, loaded));
  if (options.progress)
    options.progress->step(fs::is_directory(model) &&
                                   options.engine.device == Device::Gpu
                               ? "engine (compiles on first load)"
                               : "engine");
  TRENI_RETURN_IF_ERROR(loadCheckedEngine(model, options, loaded));
  return loaded;
}

} // namespace treni
