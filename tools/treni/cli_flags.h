//===- cli_flags.h - what treni's subcommands share ------------*- C++ -*-===//
//
// The subcommands `compile`, `run`, `chat` and `serve` (each in its own
// *_command.cpp; `agent` keeps its own flags), the flags more than one of
// them takes, and the one place each kind of options is built from those
// flags: EngineOptions (with --device and --max-seq checked against the model
// and the memory its KV cache would take), SamplingParams and the generation
// request of `run` and `chat`.
//
// The subcommands are function-local statics: a flag in another file names
// its subcommand while the globals are constructed, in no fixed order.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/exec/sampler.h"
#include "runtime/serve/embedder.h"
#include "runtime/serve/generation.h"
#include "runtime/serve/loaded_model.h"
#include "runtime/serve/reranker.h"
#include "llvm/Support/CommandLine.h"

namespace treni::cli {

llvm::cl::SubCommand &compileSubcommand();
llvm::cl::SubCommand &runSubcommand();
llvm::cl::SubCommand &chatSubcommand();
llvm::cl::SubCommand &serveSubcommand();

/// Each runs its subcommand and returns the process exit code.
int runCompileCommand();
int runRunCommand();
int runChatCommand();
int runServeCommand();

/// The model `run`, `chat` and `serve` use when given none
/// (TRENI_DEFAULT_MODEL_DIR, set in tools/CMakeLists.txt).
extern const char *const kDefaultModelDir;
/// What `treni run` asks the model when given no prompt.
inline constexpr const char *kDefaultPrompt = "What is 12 + 34?";

/// Prints "treni: error: MESSAGE" on stderr; returns the exit code (1).
int fail(const absl::Status &status);

/// EngineOptions holding what the compiler is told: --dtype, --disable-pass
/// and --pass-option (`compile` stops here).
absl::StatusOr<EngineOptions> compilerOptionsFromFlags();

/// All of EngineOptions for `model`: the compiler's, --device (auto: the GPU
/// when a CUDA device is usable, else the CPU), --max-seq and run's GPU
/// switches. --max-seq defaults to 4096, or the model's
/// max_position_embeddings when smaller; a larger one given, or one whose KV
/// cache would not fit in memory (physical memory for the CPU, free device
/// memory for the GPU), is an error naming the numbers.
absl::StatusOr<EngineOptions> engineOptionsFromFlags(const std::string &model);

/// --temperature, --top-k, --top-p and --seed, validated.
absl::StatusOr<SamplingParams> samplingFromFlags();

/// The request of `run` and `chat` (prompt ids left empty): sampling,
/// --max-tokens (`defaultMaxTokens` when not given), --stop and
/// --low-confidence, validated.
absl::StatusOr<GenerationRequest> requestFromFlags(int64_t defaultMaxTokens);

/// --max-tokens when given, else `defaultValue` (unchecked).
int64_t maxTokensFromFlags(int64_t defaultValue);

/// --low-confidence, checked to be a probability.
absl::StatusOr<double> lowConfidenceFromFlags();

/// "cpu" or "gpu".
const char *deviceName(Device device);

/// The last component of a model path ("qwen2" for "test/fixtures/qwen2/").
std::string modelName(const std::string &model);

/// Generation callback of `run` and `chat`: the text on stdout as it comes.
bool printDelta(std::string_view delta, absl::Span<const GeneratedToken>);

/// A model loaded for text (`run`, `chat`, `serve`) and the options it was
/// loaded with (--max-seq resolved).
struct TextModel {
  LoadedModel loaded;
  EngineOptions options;
  double loadSeconds = 0; ///< tokenizer, template and engine
  /// The KV-cache length, EOS ids and --no-prefix-cache.
  GeneratorOptions generatorOptions() const;
};

/// Tokenizer, chat template (--chat-template, else the model's) and engine,
/// with a progress bar on a terminal.
absl::StatusOr<TextModel> loadForText(const std::string &model);

/// What an embedding model or a reranker computes with: a step runner of
/// its own and the Embedder or Reranker over it (the other one null).
struct Scorer {
  std::unique_ptr<StepRunner> runner;
  std::unique_ptr<Embedder> embedder;
  std::unique_ptr<Reranker> reranker;
};

/// The KV blocks of a scorer that shares the process with other models: it
/// keeps nothing between requests, so one input of `maxSeq` positions plus a
/// step of `stepTokens` rows' worth of inputs of 8 tokens or more.
int64_t scorerPoolBlocks(int64_t maxSeq, int64_t stepTokens);

/// `model`'s Scorer (a Reranker when `reranker`, else an Embedder with the
/// pooling its directory declares) over a pool of `blocks` blocks (0: see
/// Engine::createStepRunner), steps of at most `stepTokens` rows. The
/// checks that need no GPU memory (pooling, yes/no tokens) come first.
absl::StatusOr<Scorer> makeScorer(const LoadedModel &model, bool reranker,
                                  int64_t blocks, int64_t stepTokens);

} // namespace treni::cli
