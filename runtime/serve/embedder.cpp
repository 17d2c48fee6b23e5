//===- embedder.cpp - embeddings from an engine's @embed ------------------===//

#include "runtime/serve/embedder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>

#include "absl/strings/str_cat.h"
#include "frontends/safetensors/safetensors.h"
#include "nlohmann/json.hpp"
#include "runtime/batch/kv_block_pool.h"
#include "support/file.h"
#include "support/status.h"

namespace treni {
namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;
constexpr char kPoolingModule[] = "sentence_transformers.models.Pooling";

/// A JSON file of the model directory, or nullopt when it does not exist.
absl::StatusOr<std::optional<nlohmann::json>>
readJsonFile(const std::filesystem::path &path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error))
    return std::nullopt;
  TRENI_ASSIGN_OR_RETURN(std::string text,
                         readRegularFile(path.string(), kMaxConfigBytes));
  auto json = parseStrictJson(text);
  if (!json.ok())
    return absl::InvalidArgumentError(
        absl::StrCat(path.string(), ": ", json.status().message()));
  return std::optional<nlohmann::json>(*std::move(json));
}

/// modules.json's Pooling module directory (relative), or nullopt.
absl::StatusOr<std::optional<std::string>>
poolingModulePath(const std::string &modelDir) {
  const std::filesystem::path file =
      std::filesystem::path(modelDir) / "modules.json";
  TRENI_ASSIGN_OR_RETURN(std::optional<nlohmann::json> modules,
                         readJsonFile(file));
  if (!modules)
    return std::nullopt;
  if (!modules->is_array())
    return absl::InvalidArgumentError(
        absl::StrCat(file.string(), ": expected a list of modules"));
  for (const nlohmann::json &module : *modules) {
    if (!module.is_object() || !module.contains("type") ||
        !module["type"].is_string() || module["type"] != kPoolingModule)
      continue;
    const nlohmann::json *path =
        module.contains("path") ? &module["path"] : nullptr;
    if (!path || !path->is_string())
      return absl::InvalidArgumentError(absl::StrCat(
          file.string(), ": the Pooling module has no \"path\" string"));
    std::string relative = path->get<std::string>();
    std::filesystem::path normal =
        std::filesystem::path(relative).lexically_normal();
    if (relative.empty() || normal.is_absolute() ||
        (!normal.empty() && *normal.begin() == ".."))
      return absl::InvalidArgumentError(
          absl::StrCat(file.string(), ": the Pooling module's path \"",
                       relative, "\" leaves the model directory"));
    return std::optional<std::string>(normal.string());
  }
  return std::nullopt;
}

} // namespace

const char *poolingName(Pooling pooling) {
  switch (pooling) {
  case Pooling::LastToken:
    return "last_token";
  case Pooling::Mean:
    return "mean";
  case Pooling::Cls:
    return "cls";
  }
  return "?";
}

bool declaresEmbeddingModel(const std::string &modelDir) {
  auto path = poolingModulePath(modelDir);
  return path.ok() && path->has_value();
}

absl::StatusOr<Pooling> readPooling(const std::string &modelDir) {
  TRENI_ASSIGN_OR_RETURN(std::optional<std::string> module,
                         poolingModulePath(modelDir));
  if (!module)
    return Pooling::LastToken;
  const std::filesystem::path file =
      std::filesystem::path(modelDir) / *module / "config.json";
  TRENI_ASSIGN_OR_RETURN(std::optional<nlohmann::json> config,
                         readJsonFile(file));
  if (!config || !config->is_object())
    return absl::InvalidArgumentError(absl::StrCat(
        file.string(), config ? ": expected an object" : ": missing"));
  std::vector<Pooling> modes;
  std::vector<std::string> unsupported;
  for (const auto &[key, value] : config->items()) {
    if (!key.starts_with("pooling_mode_") || !value.is_boolean() ||
        !value.get<bool>())
      continue;
    if (key == "pooling_mode_lasttoken")
      modes.push_back(Pooling::LastToken);
    else if (key == "pooling_mode_mean_tokens")
      modes.push_back(Pooling::Mean);
    else if (key == "pooling_mode_cls_token")
      modes.push_back(Pooling::Cls);
    else
      unsupported.push_back(key);
  }
  if (!unsupported.empty())
    return absl::InvalidArgumentError(
        absl::StrCat(file.string(), ": ", unsupported[0],
                     " is not supported (last token, mean or CLS pooling)"));
  if (modes.size() != 1)
    return absl::InvalidArgumentError(absl::StrCat(
        file.string(), ": expected exactly one pooling mode, found ",
        modes.size()));
  return modes[0];
}

Embedder::Embedder(StepRunner &runner, Pooling pooling, int64_t maxStepTokens)
    : runner_(runner), pooling_(pooling),
      maxStepTokens_(std::max<int64_t>(maxStepTokens, 1)) {}

int64_t longestPrompt(const StepRunner &runner) {
  return std::min(runner.maxSeq(), runner.numBlocks() * kKvBlockTokens);
}

int64_t Embedder::maxInputTokens() const { return longestPrompt(runner_); }

absl::StatusOr<int64_t> runPromptSteps(
    StepRunner &runner, absl::Span<const std::vector<int32_t>> inputs,
    int64_t maxStepTokens, StepOutput output, const std::atomic<bool> *cancel,
    std::chrono::steady_clock::time_point deadline,
    absl::FunctionRef<void(const PromptChunk &)> onChunk) {
  const int64_t longest = longestPrompt(runner);
  for (size_t i = 0; i < inputs.size(); ++i)
    if (inputs[i].empty() || int64_t(inputs[i].size()) > longest)
      return absl::InvalidArgumentError(
          absl::StrCat("input ", i, " has ", inputs[i].size(),
                       " tokens; an input takes 1 to ", longest));
  maxStepTokens = std::max<int64_t>(maxStepTokens, 1);
  const int64_t width = output == StepOutput::HiddenStates ? runner.hiddenSize()
                                                           : runner.vocabSize();
  // Admitted inputs in order; each owns blocks until its last chunk ran.
  struct Active {
    size_t input;
    int64_t done = 0; ///< tokens computed
    std::vector<KvBlockId> blocks;
  };
  std::vector<KvBlockId> freeBlocks;
  for (int64_t b = runner.numBlocks() - 1; b >= 0; --b)
    freeBlocks.push_back(KvBlockId(b));
  std::vector<Active> active;
  size_t next = 0;
  int64_t steps = 0;
  while (next < inputs.size() || !active.empty()) {
    if (cancel && cancel->load())
      return absl::CancelledError("the request was cancelled");
    if (std::chrono::steady_clock::now() > deadline)
      return absl::DeadlineExceededError("the request ran past its deadline");
    while (next < inputs.size()) {
      const size_t need = size_t(kvBlocksFor(int64_t(inputs[next].size())));
      if (need > freeBlocks.size())
        break;
      Active entry{next++};
      entry.blocks.assign(freeBlocks.end() - need, freeBlocks.end());
      freeBlocks.resize(freeBlocks.size() - need);
      active.push_back(std::move(entry));
    }
    // One chunk per active input, oldest first, within the step's rows.
    StepPlan plan;
    std::vector<size_t> chunkOf; // plan.prefills[i] belongs to active[..]
    int64_t budget = maxStepTokens;
    for (size_t a = 0; a < active.size() && budget > 0; ++a) {
      const std::vector<int32_t> &tokens = inputs[active[a].input];
      int64_t take =
          std::min<int64_t>(budget, int64_t(tokens.size()) - active[a].done);
      BlockTableRef table{int64_t(plan.blockTables.size()),
                          int64_t(active[a].blocks.size())};
      plan.blockTables.insert(plan.blockTables.end(), active[a].blocks.begin(),
                              active[a].blocks.end());
      const bool last = active[a].done + take == int64_t(tokens.size());
      plan.prefills.push_back(
          {SequenceId(active[a].input), active[a].done,
           std::vector<int32_t>(tokens.begin() + active[a].done,
                                tokens.begin() + active[a].done + take),
           /*samplesLast=*/output == StepOutput::LastLogits && last, table});
      chunkOf.push_back(a);
      budget -= take;
    }
    absl::StatusOr<absl::Span<const float>> rows =
        output == StepOutput::HiddenStates ? runner.embed(plan)
                                           : runner.run(plan);
    TRENI_RETURN_IF_ERROR(rows.status());
    ++steps;
    int64_t expected = 0;
    for (const PrefillChunk &chunk : plan.prefills)
      expected += output == StepOutput::HiddenStates
                      ? int64_t(chunk.tokens.size())
                      : int64_t(chunk.samplesLast);
    if (int64_t(rows->size()) != expected * width)
      return absl::InternalError(absl::StrCat("a step returned ", rows->size(),
                                              " values for ", expected,
                                              " rows of ", width));
    int64_t row = 0;
    for (size_t c = 0; c < plan.prefills.size(); ++c) {
      Active &entry = active[chunkOf[c]];
      const PrefillChunk &chunk = plan.prefills[c];
      const int64_t count = int64_t(chunk.tokens.size());
      const bool last =
          entry.done + count == int64_t(inputs[entry.input].size());
      const int64_t taken = output == StepOutput::HiddenStates
                                ? count
                                : int64_t(chunk.samplesLast);
      onChunk({entry.input, entry.done, count, last,
               rows->subspan(size_t(row * width), size_t(taken * width))});
      entry.done += count;
      row += taken;
    }
    // Finished inputs give their blocks back.
    std::vector<Active> still;
    for (Active &entry : active) {
      if (entry.done < int64_t(inputs[entry.input].size())) {
        still.push_back(std::move(entry));
        continue;
      }
      freeBlocks.insert(freeBlocks.end(), entry.blocks.begin(),
                        entry.blocks.end());
    }
    active = std::move(still);
  }
  return steps;
}

absl::StatusOr<std::vector<std::vector<float>>>
Embedder::embed(absl::Span<const std::vector<int32_t>> inputs,
                int64_t dimensions, const std::atomic<bool> *cancel,
                std::chrono::steady_clock::time_point deadline) {
  std::lock_guard<std::mutex> lock(mutex_);
  const int64_t hidden = runner_.hiddenSize();
  if (hidden <= 0)
    return absl::FailedPreconditionError(
        "the model was compiled without @embed: compile it again");
  if (dimensions < 0 || dimensions > hidden)
    return absl::InvalidArgumentError(
        absl::StrCat("dimensions must be 1 to ", hidden, " (the model's), not ",
                     dimensions));
  std::vector<std::vector<float>> out(inputs.size());
  std::vector<std::vector<double>> sums(
      pooling_ == Pooling::Mean ? inputs.size() : 0);
  absl::StatusOr<int64_t> steps =
      runPromptSteps(runner_, inputs, maxStepTokens_, StepOutput::HiddenStates,
                     cancel, deadline, [&](const PromptChunk &chunk) {
                       const float *first = chunk.rows.data();
                       std::vector<float> &vector = out[chunk.input];
                       if (pooling_ == Pooling::Mean) {
                         std::vector<double> &sum = sums[chunk.input];
                         sum.resize(size_t(hidden), 0.0);
                         for (int64_t r = 0; r < chunk.count; ++r)
                           for (int64_t d = 0; d < hidden; ++d)
                             sum[d] += first[r * hidden + d];
                         if (chunk.last) {
                           vector.resize(size_t(hidden));
                           const int64_t total = chunk.first + chunk.count;
                           for (int64_t d = 0; d < hidden; ++d)
                             vector[d] = float(sum[d] / double(total));
                         }
                       }
                       if (pooling_ == Pooling::Cls && chunk.first == 0)
                         vector.assign(first, first + hidden);
                       if (pooling_ == Pooling::LastToken && chunk.last)
                         vector.assign(first + (chunk.count - 1) * hidden,
                                       first + chunk.count * hidden);
                     });
  TRENI_RETURN_IF_ERROR(steps.status());
  steps_ += *steps;
  for (std::vector<float> &vector : out) {
    if (dimensions > 0)
      vector.resize(size_t(dimensions));
    double norm = 0;
    for (float value : vector)
      norm += double(value) * value;
    norm = std::sqrt(norm);
    if (norm > 0)
      for (float &value : vector)
        value = float(value / norm);
  }
  return out;
}

} // namespace treni
