//===- run_command.cpp - `treni run` --------------------------------------===//
//
//   treni run [MODEL_DIR | model.treni] [--prompt TEXT] [--raw-prompt]
//             [--device auto|cpu|gpu] [--max-tokens N] [--max-seq N]
//             [--temperature T --top-k K --top-p P --seed S --stop STR]
//
// answers a prompt: the prompt, the generated text (streamed on stdout), the
// load time, time to first token and decode rate, and the awareness summary
// (perplexity, entropy, low-confidence tokens). Without MODEL it runs the
// built-in default model; without --prompt it asks kDefaultPrompt. The prompt
// goes through the model's chat template as a user message (--raw-prompt:
// as it is, a completion).
//
//   treni run [MODEL] --prompt-ids 1,2,3 | --prompt-length N
//             [--force-ids ...] [--dump-logits FILE] [--repeat N] [--json]
//             [--profile N] [--no-cuda-graph --no-pdl --blocking-sync
//              --no-async-decode]
//
// works on token ids (benchmarks, parity checks): the generated ids on
// stdout, timings on stderr, and with --json one JSON line of them on stdout.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "runtime/text/chat_template.h"
#include "support/clock.h"
#include "support/json.h"
#include "support/status.h"
#include "tools/treni/cli_flags.h"

namespace cl = llvm::cl;

namespace treni::cli {
namespace {

cl::opt<std::string> runModel(cl::Positional,
                              cl::desc("[MODEL_DIR | model.treni]"),
                              cl::init(kDefaultModelDir),
                              cl::sub(runSubcommand()));
cl::opt<std::string>
    promptText("prompt",
               cl::desc("What to ask (default: \"What is 12 + 34?\"): a "
                        "user message through the model's chat template"),
               cl::init(kDefaultPrompt), cl::sub(runSubcommand()));
cl::opt<bool> rawPrompt(
    "raw-prompt",
    cl::desc(
        "Send --prompt as it is (a completion), without the chat template"),
    cl::init(false), cl::sub(runSubcommand()));

// Token ids: any of these selects the id mode.
cl::opt<std::string> promptIds("prompt-ids",
                               cl::desc("Comma-separated prompt token ids"),
                               cl::init("1,2,3"), cl::sub(runSubcommand()));
cl::opt<int> promptLength(
    "prompt-length",
    cl::desc("Use N pseudo-random prompt ids instead of --prompt-ids"),
    cl::init(0), cl::sub(runSubcommand()));
cl::opt<std::string> forceIds(
    "force-ids",
    cl::desc("Teacher forcing: feed these ids to decode instead of the "
             "sampled ones"),
    cl::init(""), cl::sub(runSubcommand()));
cl::opt<std::string>
    dumpLogits("dump-logits",
               cl::desc("Write the fp32 logits of every step to FILE"),
               cl::init(""), cl::sub(runSubcommand()));
cl::opt<int> repeat("repeat",
                    cl::desc("Generate N times after loading; report medians"),
                    cl::init(1), cl::sub(runSubcommand()));
cl::opt<bool> json("json", cl::desc("Print the timings as one JSON line"),
                   cl::init(false), cl::sub(runSubcommand()));
cl::opt<int> profile("profile",
                     cl::desc("GPU: after generating, time every decode step "
                              "N times and print where a token's time goes"),
                     cl::init(0), cl::sub(runSubcommand()));

/// Tokens `run` generates from text unless --max-tokens says otherwise.
constexpr int64_t kTextMaxTokens = 64;
/// ... and from token ids.
constexpr int64_t kIdMaxTokens = 16;

bool idModeSelected() {
  for (const cl::Option *flag : std::initializer_list<const cl::Option *>{
           &promptIds, &promptLength, &forceIds, &dumpLogits, &repeat, &json,
           &profile})
    if (flag->getNumOccurrences())
      return true;
  return false;
}

/// A clearer error than the loader's when the built-in model is missing (a
/// binary copied away from its source tree).
absl::Status checkModelGiven(const std::string &model) {
  if (model.empty())
    return absl::InvalidArgumentError("no MODEL given");
  if (model == kDefaultModelDir && !std::filesystem::exists(model))
    return absl::NotFoundError(
        absl::StrCat("no MODEL given, and the built-in default model (", model,
                     ") is not there"));
  return absl::OkStatus();
}

std::string modelLine(const std::string &model, const EngineOptions &options,
                      const EngineStats &stats) {
  return absl::StrCat("model: ", model, " [", deviceName(options.device),
                      stats.deviceName.empty() ? "" : ", ", stats.deviceName,
                      "]");
}

//===----------------------------------------------------------------------===//
// Text
//===----------------------------------------------------------------------===//

/// The prompt's ids: a user message through the chat template, unless
/// --raw-prompt or the model has none. `templated` says which.
absl::StatusOr<std::vector<int32_t>> encodePrompt(const LoadedModel &model,
                                                  bool &templated) {
  templated = !rawPrompt && model.chatTemplate;
  if (!templated)
    return model.tokenizer->encode(promptText);
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "user"}, {"content", promptText.getValue()}});
  TRENI_ASSIGN_OR_RETURN(std::string rendered,
                         model.chatTemplate->render(messages));
  // The template writes the special tokens itself.
  return model.tokenizer->encode(rendered, /*addSpecialTokens=*/false);
}

/// The tokens under the confidence threshold, each with its probability
/// (the first few; the count says how many there were).
std::string lowConfidenceTokens(const Generator &generator,
                                const GenerationResult &result) {
  constexpr size_t kShown = 8;
  const Awareness &a = result.awareness;
  std::string text =
      absl::StrFormat("low-confidence: %zu of %lld tokens under p=%.2f",
                      a.lowConfidencePositions.size(), (long long)a.numTokens,
                      a.lowConfidenceThreshold);
  for (size_t i = 0; i < a.lowConfidencePositions.size() && i < kShown; ++i) {
    const GeneratedToken &token = result.tokens[a.lowConfidencePositions[i]];
    absl::StrAppendFormat(&text, "%s\"%s\" (p=%.2f)", i == 0 ? ": " : ", ",
                          absl::CHexEscape(generator.tokenBytes(token.id)),
                          std::exp(token.logprob));
  }
  if (a.lowConfidencePositions.size() > kShown)
    text += ", ...";
  return text;
}

void printTextReport(const TextModel &model, const Generator &generator,
                     const GenerationResult &result, bool templated) {
  const GenerationTiming &t = result.awareness.timing;
  const Awareness &a = result.awareness;
  std::fprintf(
      stderr,
      "load: %.3f s (%s)\n"
      "prefill: %lld tokens%s, time to first token %.3f ms\n"
      "decode: %lld tokens, %.1f tokens/s (finished: %s)\n"
      "awareness: perplexity %.3f, mean entropy %.3f, max entropy %.3f "
      "(nats)\n"
      "%s\n",
      model.loadSeconds, model.loaded.engine->stats().source.c_str(),
      (long long)t.promptTokens, templated ? " (chat template)" : "",
      t.timeToFirstTokenSeconds() * 1e3, (long long)t.completionTokens,
      t.decodeTokensPerSecond(), toString(result.finishReason), a.perplexity,
      a.meanEntropy, a.maxEntropy,
      lowConfidenceTokens(generator, result).c_str());
}

int runText() {
  auto request = requestFromFlags(kTextMaxTokens);
  if (!request.ok())
    return fail(request.status());
  if (absl::Status given = checkModelGiven(runModel); !given.ok())
    return fail(given);
  auto model = loadForText(runModel);
  if (!model.ok())
    return fail(model.status());
  bool templated = false;
  auto ids = encodePrompt(model->loaded, templated);
  if (!ids.ok())
    return fail(ids.status());
  request->promptIds = std::move(*ids);
  std::fprintf(
      stderr, "%s\nprompt: %s\n",
      modelLine(runModel, model->options, model->loaded.engine->stats())
          .c_str(),
      promptText.c_str());
  Generator generator(*model->loaded.engine, *model->loaded.tokenizer,
                      model->generatorOptions());
  auto result = generator.generate(*request, printDelta);
  std::printf("\n");
  std::fflush(stdout);
  if (!result.ok())
    return fail(result.status());
  printTextReport(*model, generator, *result, templated);
  return 0;
}

//===----------------------------------------------------------------------===//
// Token ids
//===----------------------------------------------------------------------===//

absl::StatusOr<std::vector<int32_t>> parseIds(const std::string &text,
                                              const char *flag) {
  std::vector<int32_t> ids;
  if (text.empty())
    return ids;
  for (absl::string_view piece : absl::StrSplit(text, ',')) {
    int32_t id;
    if (!absl::SimpleAtoi(piece, &id))
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": '", piece, "' is not a token id"));
    ids.push_back(id);
  }
  return ids;
}

/// --prompt-ids, or --prompt-length pseudo-random ids.
absl::StatusOr<std::vector<int32_t>> promptFromFlags(const Engine &engine) {
  TRENI_ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                         parseIds(promptIds, "--prompt-ids"));
  if (promptLength > 0) {
    // Deterministic pseudo-random ids (benchmarks): a fixed LCG over the vocab.
    prompt.clear();
    uint64_t state = 12345;
    for (int i = 0; i < promptLength; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      prompt.push_back(int32_t((state >> 33) % uint64_t(engine.vocabSize())));
    }
  }
  if (prompt.empty())
    return absl::InvalidArgumentError("--prompt-ids is empty");
  return prompt;
}

/// What the repeats of an id run measured.
struct IdRun {
  std::vector<int32_t> generated; ///< by the last repeat
  std::vector<double> ttfts, decodeRates;
};

absl::Status appendLogits(Engine &engine, std::ofstream &out) {
  TRENI_ASSIGN_OR_RETURN(std::vector<float> logits, engine.lastLogits());
  out.write(reinterpret_cast<const char *>(logits.data()),
            logits.size() * sizeof(float));
  return absl::OkStatus();
}

/// One generation of `maxTokens` ids after `prompt`, its times added to
/// `run`; every step's logits go to `logitsOut` when given.
absl::Status generateIds(Engine &engine, const std::vector<int32_t> &prompt,
                         const std::vector<int32_t> &forced,
                         const SamplingParams &params, int64_t maxTokens,
                         std::ofstream *logitsOut, IdRun &run) {
  run.generated.clear();
  auto start = std::chrono::steady_clock::now();
  TRENI_ASSIGN_OR_RETURN(SampleResult sample, engine.prefill(prompt, params));
  run.ttfts.push_back(secondsSince(start));
  if (logitsOut)
    TRENI_RETURN_IF_ERROR(appendLogits(engine, *logitsOut));
  start = std::chrono::steady_clock::now();
  int64_t position = prompt.size();
  if (maxTokens > 0)
    run.generated.push_back(sample.token);
  if (forced.empty() && !logitsOut) {
    // Each step fed the token sampled before: the engine runs ahead.
    TRENI_RETURN_IF_ERROR(
        engine.decodeStream(sample.token, position, maxTokens - 1, params,
                            [&](const SampleResult &next) {
                              run.generated.push_back(next.token);
                              return true;
                            }));
  } else {
    // Teacher forcing or logits to dump: one step at a time.
    for (int64_t i = 1; i < maxTokens; ++i) {
      int32_t next =
          size_t(i - 1) < forced.size() ? forced[i - 1] : sample.token;
      TRENI_ASSIGN_OR_RETURN(sample, engine.decode(next, position++, params));
      run.generated.push_back(sample.token);
      if (logitsOut)
        TRENI_RETURN_IF_ERROR(appendLogits(engine, *logitsOut));
    }
  }
  if (maxTokens > 1)
    run.decodeRates.push_back((maxTokens - 1) / secondsSince(start));
  return absl::OkStatus();
}

/// --profile: per-step decode times by kernel template, then the decode
/// graph replayed back to back.
absl::Status printDecodeProfile(Engine &engine, int64_t position) {
  TRENI_ASSIGN_OR_RETURN(std::vector<StepTime> times,
                         engine.profileDecode(position, profile));
  // By template: launches per token and total time per token.
  std::map<std::string, std::pair<int, double>> byTemplate;
  double total = 0;
  for (const StepTime &t : times) {
    auto &[count, micros] = byTemplate[t.templateName];
    ++count;
    micros += t.microseconds;
    total += t.microseconds;
  }
  std::fprintf(stderr,
               "decode profile at position %lld (%d runs, events around "
               "each step):\n  %-22s %8s %12s %7s\n",
               (long long)position, profile.getValue(), "template", "launches",
               "us/token", "share");
  for (const auto &[name, entry] : byTemplate)
    std::fprintf(stderr, "  %-22s %8d %12.1f %6.1f%%\n", name.c_str(),
                 entry.first, entry.second, 100 * entry.second / total);
  std::fprintf(stderr, "  %-22s %8zu %12.1f\n", "sum of steps", times.size(),
               total);
  // The whole step as the graph runs it, back to back: the GPU's time per
  // token; the rest of a generated token's time is the host round trip.
  auto replay = engine.replayDecode(position, 10 * profile);
  if (replay.ok())
    std::fprintf(stderr,
                 "  graph replay, back to back: %.3f ms/token on the GPU "
                 "(%.1f tok/s if the host cost nothing); host %.1f us per "
                 "cudaGraphLaunch\n",
                 replay->gpuMillis, 1000.0 / replay->gpuMillis,
                 replay->hostLaunchMicros);
  return absl::OkStatus();
}

/// --profile with a prompt of more than one token: per-step prefill times
/// of the prompt's first chunk, by template, with the TFLOP/s of the GEMMs
/// (by shape) and of the attention.
absl::Status printPrefillProfile(Engine &engine, int64_t tokens) {
  TRENI_ASSIGN_OR_RETURN(std::vector<StepTime> times,
                         engine.profilePrefill(tokens, profile));
  std::fprintf(stderr,
               "prefill profile, %lld tokens (%d runs, events around each "
               "step):\n%s",
               (long long)tokens, profile.getValue(),
               formatStepTimes(times).c_str());
  return absl::OkStatus();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

/// `value` to `digits` decimals: the report's numbers print short.
double rounded(double value, int digits) {
  double scale = std::pow(10.0, digits);
  return std::round(value * scale) / scale;
}

/// Timings of an id run as --json prints them (bench/*.py read the fields).
nlohmann::ordered_json idRunReport(const Engine &engine, Device device,
                                   size_t promptTokens, int64_t newTokens,
                                   const IdRun &run) {
  const EngineStats &stats = engine.stats();
  double ttft = median(run.ttfts), rate = median(run.decodeRates);
  double weightRate = stats.weightSeconds > 0
                          ? stats.weightBytes / stats.weightSeconds / 1e9
                          : 0.0;
  return {
      {"device", deviceName(device)},
      {"gpu", stats.deviceName},
      {"prompt_tokens", promptTokens},
      {"new_tokens", newTokens},
      {"max_seq", engine.maxSeq()},
      {"repeat", repeat.getValue()},
      {"ttft_ms", rounded(ttft * 1e3, 4)},
      {"decode_tok_s", rounded(rate, 2)},
      {"ms_per_token", rounded(rate > 0 ? 1e3 / rate : 0.0, 5)},
      {"load_s", rounded(stats.totalLoadSeconds, 4)},
      {"compile_s", rounded(stats.compileSeconds, 4)},
      {"kernel_s", rounded(stats.kernelSeconds, 4)},
      {"weights_s", rounded(stats.weightSeconds, 4)},
      {"weight_gb_s", rounded(weightRate, 3)},
      {"weight_bytes", stats.weightBytes},
      {"nvrtc_compiles", stats.nvrtcCompiles},
      {"cache_hits", stats.cacheHits},
      {"aot_kernels", stats.aotKernels},
      {"source", stats.source},
      {"first_token_s", rounded(stats.totalLoadSeconds + run.ttfts.front(), 4)},
  };
}

void printIdSummary(const Engine &engine, const EngineOptions &options,
                    size_t promptTokens, int64_t newTokens, const IdRun &run) {
  const EngineStats &stats = engine.stats();
  double ttft = median(run.ttfts), rate = median(run.decodeRates);
  std::fprintf(
      stderr,
      "%s\n"
      "load: %.3f s (%s; compile %.3f s, kernels %.3f s: %lld NVRTC compiles, "
      "%lld cache hits, %lld from package; weights %.3f s, %.2f GB/s)\n"
      "prefill: %zu tokens, time to first token %.3f ms\n"
      "decode: %lld tokens, %.1f tokens/s (%.3f ms/token)%s\n",
      modelLine(runModel, options, stats).c_str(), stats.totalLoadSeconds,
      stats.source.c_str(), stats.compileSeconds, stats.kernelSeconds,
      (long long)stats.nvrtcCompiles, (long long)stats.cacheHits,
      (long long)stats.aotKernels, stats.weightSeconds,
      stats.weightSeconds > 0 ? stats.weightBytes / stats.weightSeconds / 1e9
                              : 0.0,
      promptTokens, ttft * 1e3, (long long)std::max<int64_t>(0, newTokens - 1),
      rate, rate > 0 ? 1e3 / rate : 0.0,
      repeat > 1 ? absl::StrCat(" [median of ", repeat.getValue(), "]").c_str()
                 : "");
}

int runIds() {
  int64_t newTokens = maxTokensFromFlags(kIdMaxTokens);
  if (newTokens < 0 || repeat < 1 || profile < 0)
    return fail(absl::InvalidArgumentError(
        "--max-tokens must be >= 0, --repeat >= 1 and --profile >= 0"));
  auto forced = parseIds(forceIds, "--force-ids");
  auto params = samplingFromFlags();
  if (!forced.ok() || !params.ok())
    return fail(forced.ok() ? params.status() : forced.status());
  if (absl::Status given = checkModelGiven(runModel); !given.ok())
    return fail(given);
  auto options = engineOptionsFromFlags(runModel);
  if (!options.ok())
    return fail(options.status());
  auto engine = loadEngine(runModel, *options);
  if (!engine.ok())
    return fail(engine.status());
  auto prompt = promptFromFlags(**engine);
  if (!prompt.ok())
    return fail(prompt.status());
  std::ofstream logitsOut;
  if (!dumpLogits.empty()) {
    logitsOut.open(dumpLogits, std::ios::binary | std::ios::trunc);
    if (!logitsOut)
      return fail(absl::UnavailableError("cannot write " + dumpLogits));
  }
  IdRun run;
  for (int r = 0; r < repeat; ++r)
    if (absl::Status status = generateIds(
            **engine, *prompt, *forced, *params, newTokens,
            r == 0 && logitsOut.is_open() ? &logitsOut : nullptr, run);
        !status.ok())
      return fail(status);
  if (profile > 0 && prompt->size() > 1)
    if (absl::Status status = printPrefillProfile(
            **engine, std::min<int64_t>(prompt->size(), options->prefillChunk));
        !status.ok())
      return fail(status);
  if (profile > 0)
    if (absl::Status status = printDecodeProfile(**engine, prompt->size());
        !status.ok())
      return fail(status);
  std::printf("%s\n", absl::StrJoin(run.generated, ",").c_str());
  if (json)
    std::printf("%s\n", dumpJson(idRunReport(**engine, options->device,
                                             prompt->size(), newTokens, run))
                            .c_str());
  printIdSummary(**engine, *options, prompt->size(), newTokens, run);
  return 0;
}

} // namespace

int runRunCommand() {
  bool ids = idModeSelected();
  if (ids && promptText.getNumOccurrences())
    return fail(absl::InvalidArgumentError(
        "--prompt is text; --prompt-ids, --prompt-length, --force-ids, "
        "--dump-logits, --repeat, --json and --profile work on token ids: "
        "give one or the other"));
  return ids ? runIds() : runText();
}

} // namespace treni::cli
