//===- main.cpp - the treni command-line tool ----------------------------===//
//
//   treni compile MODEL_DIR [--emit=mlir|mlir-opt|plan|cuda|package] [-o FILE]
//                 [--arch sm_90] [--dtype bf16] [--disable-pass=NAME ...]
//   treni run [MODEL_DIR | model.treni] [--device cpu|gpu] [--prompt-ids 1,2,3]
//             [--max-tokens N] [--temperature T --top-k K --top-p P --seed S]
//             [--force-ids ...] [--dump-logits FILE] [--repeat N] [--json]
//   treni run [MODEL] --prompt "text" [--max-tokens N --temperature T
//             --top-p P --top-k K --seed S --stop STR]   (streams text)
//   treni chat [MODEL] [--system TEXT --chat-template FILE ...]
//   treni serve [MODEL] [--host 127.0.0.1 --port 8080 --queue-size N
//             --request-timeout S --chat-template FILE --served-model-name NAME
//             --api-key KEY --allowed-hosts NAMES --enable-agent-api]
//             (docs/server.md: limits, timeouts, the security options)
//
// With no model, `run`, `chat` and `serve` use the bundled tiny Qwen2 fixture
// on the CPU.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <thread>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <unistd.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "codegen/mlir/Compiler.h"
#include "codegen/KernelSource.h"
#include "support/status.h"
#include "runtime/agent/agent_http.h"
#include "runtime/text/chat_template.h"
#include "runtime/exec/cpu_executor.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/serve/generation.h"
#include "runtime/serve/http_server.h"
#include "runtime/serve/openai_api.h"
#include "runtime/serve/progress.h"
#include "runtime/exec/sampler.h"
#include "tools/treni/agent_command.h"
#include "runtime/text/tokenizer.h"
#include "runtime/tools/tool_registry.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/InitLLVM.h"
#include "support/clock.h"

#ifndef TRENI_DEFAULT_MODEL_DIR
#define TRENI_DEFAULT_MODEL_DIR ""
#endif

namespace cl = llvm::cl;
using namespace treni;

namespace {
cl::SubCommand compileCommand("compile", "Compile a model directory");
cl::SubCommand runCommand("run", "Generate tokens from a model");
cl::SubCommand chatCommand("chat", "Interactive multi-turn chat with the model's template");
cl::SubCommand serveCommand("serve", "Serve the OpenAI HTTP API");

cl::opt<std::string> compileModel(cl::Positional, cl::desc("MODEL_DIR"),
                                  cl::Required, cl::sub(compileCommand));
cl::opt<std::string> runModel(cl::Positional, cl::desc("[MODEL_DIR | model.treni]"),
                              cl::init(TRENI_DEFAULT_MODEL_DIR),
                              cl::sub(runCommand));
cl::opt<std::string> chatModel(cl::Positional, cl::desc("[MODEL_DIR | model.treni]"),
                               cl::init(TRENI_DEFAULT_MODEL_DIR), cl::sub(chatCommand));
cl::opt<std::string> serveModel(cl::Positional, cl::desc("[MODEL_DIR | model.treni]"),
                                cl::init(TRENI_DEFAULT_MODEL_DIR),
                                cl::sub(serveCommand));
enum class Emit { Mlir, MlirOpt, Plan, Cuda, Package };
cl::opt<Emit> emit(
    "emit", cl::desc("What to write (default: package for a .treni output, else plan)"),
    cl::values(clEnumValN(Emit::Mlir, "mlir", "the treni IR the frontend builds"),
               clEnumValN(Emit::MlirOpt, "mlir-opt",
                          "the IR after treni-default-pipeline"),
               clEnumValN(Emit::Plan, "plan", "the executable plan (JSON)"),
               clEnumValN(Emit::Cuda, "cuda", "the generated CUDA C++ of every kernel"),
               clEnumValN(Emit::Package, "package",
                          "an AOT package: plan, kernel sources and cubins")),
    cl::sub(compileCommand));
cl::opt<std::string> outputFile("o", cl::desc("Output file (default: stdout)"),
                                cl::value_desc("FILE"), cl::init("-"),
                                cl::sub(compileCommand));
cl::opt<std::string> arch("arch", cl::desc("GPU architecture of the package's cubins"),
                          cl::init("sm_90"), cl::sub(compileCommand));
cl::opt<std::string> dtype("dtype",
                           cl::desc("Activation dtype: bf16, f16 or f32 (default: "
                                    "the checkpoint's; bf16 for f32 checkpoints on GPU)"),
                           cl::init(""), cl::sub(compileCommand), cl::sub(runCommand),
                           cl::sub(chatCommand), cl::sub(serveCommand));
cl::list<std::string> disablePass(
    "disable-pass", cl::desc("Leave a pass of treni-default-pipeline out"),
    cl::value_desc("NAME"), cl::sub(compileCommand), cl::sub(runCommand),
    cl::sub(chatCommand), cl::sub(serveCommand));

cl::list<std::string> passOption(
    "pass-option",
    cl::desc("Options of a pass of treni-default-pipeline, e.g. "
             "'treni-fuse-matvec=fold-norm=false fold-gated=false'"),
    cl::value_desc("NAME=OPTIONS"), cl::sub(compileCommand), cl::sub(runCommand),
    cl::sub(chatCommand), cl::sub(serveCommand));

/// --pass-option values by pass flag (the text after the first '=').
std::map<std::string, std::string> passOptionMap() {
  std::map<std::string, std::string> options;
  for (const std::string &entry : passOption) {
    size_t equals = entry.find('=');
    std::string flag = entry.substr(0, equals);
    std::string &text = options[flag];
    if (equals != std::string::npos)
      text += (text.empty() ? "" : " ") + entry.substr(equals + 1);
  }
  return options;
}

cl::opt<std::string> device("device", cl::desc("cpu or gpu"), cl::init("cpu"),
                            cl::sub(runCommand), cl::sub(chatCommand),
                            cl::sub(serveCommand));
cl::opt<std::string> promptIds("prompt-ids",
                               cl::desc("Comma-separated prompt token ids"),
                               cl::init("1,2,3"), cl::sub(runCommand));
cl::opt<int> promptLength("prompt-length",
                          cl::desc("Use N pseudo-random prompt ids instead of --prompt-ids"),
                          cl::init(0), cl::sub(runCommand));
cl::opt<int> maxTokens("max-tokens",
                       cl::desc("Tokens to generate (default 16; chat: 512)"),
                       cl::init(16), cl::sub(runCommand), cl::sub(chatCommand));
cl::opt<int> maxSeq("max-seq", cl::desc("KV cache length in tokens (the context)"),
                    cl::init(4096), cl::sub(runCommand), cl::sub(chatCommand),
                    cl::sub(serveCommand));
cl::opt<float> temperature("temperature", cl::desc("0 = greedy"), cl::init(0.0f),
                           cl::sub(runCommand), cl::sub(chatCommand));
cl::opt<int> topK("top-k", cl::desc("0 = off"), cl::init(0), cl::sub(runCommand),
                  cl::sub(chatCommand));
cl::opt<float> topP("top-p", cl::desc("1 = off"), cl::init(1.0f), cl::sub(runCommand),
                    cl::sub(chatCommand));
cl::opt<uint64_t> seed("seed", cl::desc("Sampling seed"), cl::init(0),
                       cl::sub(runCommand), cl::sub(chatCommand));
cl::opt<std::string> promptText("prompt",
                                cl::desc("Text prompt: stream generated text "
                                         "(instead of --prompt-ids)"),
                                cl::init(""), cl::sub(runCommand));
cl::list<std::string> stopStrings("stop", cl::desc("Stop at this text (repeatable)"),
                                  cl::sub(runCommand), cl::sub(chatCommand));
cl::opt<std::string> tokenizerDir("tokenizer",
                                  cl::desc("Directory of tokenizer.json and "
                                           "tokenizer_config.json (default: the model's)"),
                                  cl::init(""), cl::sub(runCommand), cl::sub(chatCommand),
                                  cl::sub(serveCommand));
cl::opt<std::string> chatTemplateFile(
    "chat-template",
    cl::desc("Chat template: a Jinja file, or a tokenizer_config.json"),
    cl::init(""), cl::sub(chatCommand), cl::sub(serveCommand));
cl::opt<std::string> systemPrompt("system", cl::desc("System message"), cl::init(""),
                                  cl::sub(chatCommand));
cl::opt<std::string> host("host", cl::desc("Address to listen on"),
                          cl::init("127.0.0.1"), cl::sub(serveCommand));
cl::opt<int> port("port", cl::desc("Port (0: any free port)"), cl::init(8080),
                  cl::sub(serveCommand));
cl::opt<int> queueSize("queue-size",
                       cl::desc("Requests that may wait for the engine (more: 429)"),
                       cl::init(16), cl::sub(serveCommand));
cl::opt<double> requestTimeout("request-timeout",
                               cl::desc("Seconds a request may take, queue included"),
                               cl::init(600), cl::sub(serveCommand));
cl::opt<std::string> serveToolsConfig(
    "tools-config",
    cl::desc("Tools for POST /v1/agent/run (see `treni agent run`; needs --enable-agent-api)"),
    cl::value_desc("FILE"), cl::init(""), cl::sub(serveCommand));
cl::opt<bool> enableAgentApi("enable-agent-api",
                             cl::desc("Mount POST /v1/agent/run (runs the tools of "
                                      "--tools-config for whoever may call the API)"),
                             cl::init(false), cl::sub(serveCommand));
cl::opt<std::string> apiKey("api-key",
                            cl::desc("Require 'Authorization: Bearer KEY' on every route "
                                     "but /health (default: $TRENI_API_KEY)"),
                            cl::value_desc("KEY"), cl::init(""), cl::sub(serveCommand));
cl::list<std::string> allowedHosts(
    "allowed-hosts",
    cl::desc("Host header names accepted besides the bound address's ('*': any)"),
    cl::value_desc("NAME[:PORT],..."), cl::CommaSeparated, cl::sub(serveCommand));
cl::opt<double> headerTimeout("header-timeout",
                              cl::desc("Seconds a request's headers may take to arrive"),
                              cl::init(10), cl::sub(serveCommand));
cl::opt<double> bodyTimeout("body-timeout",
                            cl::desc("Seconds a request's body may take to arrive"),
                            cl::init(30), cl::sub(serveCommand));
cl::opt<int> maxConnectionsPerClient(
    "max-connections-per-client",
    cl::desc("Open connections one client address may hold (more: 503)"), cl::init(64),
    cl::sub(serveCommand));
cl::opt<std::string> servedModelName("served-model-name",
                                     cl::desc("The `model` name clients use "
                                              "(default: the model directory's name)"),
                                     cl::init(""), cl::sub(serveCommand));
cl::opt<int> maxBodyKiB("max-body-kib", cl::desc("Largest request body (413 above)"),
                        cl::init(4096), cl::sub(serveCommand));
cl::opt<double> lowConfidence("low-confidence",
                              cl::desc("Probability under which a token counts as "
                                       "low-confidence in `awareness`"),
                              cl::init(kDefaultLowConfidenceProbability),
                              cl::sub(serveCommand), cl::sub(runCommand),
                              cl::sub(chatCommand));
cl::opt<bool> noPrefixCache(
    "no-prefix-cache",
    cl::desc("Prefill every prompt whole instead of reusing the KV cache of "
             "the prefix it shares with the previous one"),
    cl::init(false), cl::sub(runCommand), cl::sub(chatCommand),
    cl::sub(serveCommand));
cl::opt<int> tokenDelayMs("debug-token-delay-ms",
                          cl::desc("Testing: sleep after every token"), cl::init(0),
                          cl::Hidden, cl::sub(serveCommand));
cl::opt<std::string> forceIds(
    "force-ids",
    cl::desc("Teacher forcing: feed these ids to decode instead of the sampled ones"),
    cl::init(""), cl::sub(runCommand));
cl::opt<std::string> dumpLogits(
    "dump-logits", cl::desc("Write the fp32 logits of every step to FILE"),
    cl::init(""), cl::sub(runCommand));
cl::opt<int> repeat("repeat", cl::desc("Generate N times after loading; report medians"),
                    cl::init(1), cl::sub(runCommand));
cl::opt<bool> json("json", cl::desc("Print the timings as one JSON line"),
                   cl::init(false), cl::sub(runCommand));
cl::opt<int> profile("profile",
                     cl::desc("GPU: after generating, time every decode step "
                              "N times and print where a token's time goes"),
                     cl::init(0), cl::sub(runCommand));
cl::opt<bool> noGraph("no-cuda-graph", cl::desc("Launch decode step by step"),
                      cl::init(false), cl::sub(runCommand));
cl::opt<bool> blockingSync(
    "blocking-sync",
    cl::desc("Wait for each step with a blocking synchronisation instead of "
             "polling the stream"),
    cl::sub(runCommand));
cl::opt<bool> noPdl("no-pdl",
                    cl::desc("Launch kernels without programmatic dependent launch"),
                    cl::sub(runCommand));
cl::opt<bool> noAsyncDecode(
    "no-async-decode",
    cl::desc("Read each decode step's token before enqueueing the next one "
             "(default: the GPU feeds a step's token to the next, which is "
             "enqueued before the host reads it)"),
    cl::sub(runCommand));

int fail(const absl::Status &status) {
  std::fprintf(stderr, "treni: error: %s\n", std::string(status.message()).c_str());
  return 1;
}

absl::StatusOr<std::optional<DType>> parseDtypeFlag() {
  if (dtype.empty())
    return std::optional<DType>();
  if (dtype == "bf16")
    return std::optional<DType>(DType::BF16);
  if (dtype == "f16")
    return std::optional<DType>(DType::F16);
  if (dtype == "f32")
    return std::optional<DType>(DType::F32);
  return absl::InvalidArgumentError("--dtype must be bf16, f16 or f32, not " +
                                    dtype);
}

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

int runCompile() {
  auto activation = parseDtypeFlag();
  if (!activation.ok())
    return fail(activation.status());
  Emit what = emit.getNumOccurrences()
                  ? emit.getValue()
                  : (llvm::StringRef(outputFile).ends_with(".treni") ? Emit::Package
                                                                     : Emit::Plan);
  if (what == Emit::Package) {
    if (outputFile == "-")
      return fail(absl::InvalidArgumentError("--emit=package needs -o FILE"));
    EngineOptions options;
    options.disabledPasses.assign(disablePass.begin(), disablePass.end());
    options.passOptions = passOptionMap();
    options.activationDtype = *activation;
    auto stats = compilePackage(compileModel, outputFile, arch, options);
    if (!stats.ok())
      return fail(stats.status());
    std::fprintf(stderr, "wrote %s: %lld kernels for %s (%lld compiled by NVRTC, %lld from cache) in %.2f s\n",
                 outputFile.c_str(), (long long)stats->kernels, arch.c_str(),
                 (long long)stats->nvrtcCompiles, (long long)stats->cacheHits,
                 stats->seconds);
    return 0;
  }

  mlir::MLIRContext context;
  std::string text;
  CompileOptions options;
  options.disabledPasses.assign(disablePass.begin(), disablePass.end());
    options.passOptions = passOptionMap();
  options.activationDtype = *activation;
  options.inputIR = what == Emit::Mlir ? &text : nullptr;
  options.outputIR = what == Emit::MlirOpt ? &text : nullptr;
  options.buildPlan = what == Emit::Plan || what == Emit::Cuda;
  auto compiled = compileModelDir(context, compileModel, options);
  if (!compiled.ok())
    return fail(compiled.status());
  if (what == Emit::Plan)
    text = serializePlan(compiled->plan);
  if (what == Emit::Cuda) {
    auto kernels = generateAllKernels(compiled->plan);
    if (!kernels.ok())
      return fail(kernels.status());
    for (const KernelSpec &kernel : *kernels)
      absl::StrAppend(&text, kernel.source, "\n");
  }
  if (outputFile == "-") {
    std::fwrite(text.data(), 1, text.size(), stdout);
  } else {
    std::ofstream out(outputFile, std::ios::binary);
    out << text;
    if (!out)
      return fail(absl::UnavailableError("cannot write " + outputFile));
  }
  if (what == Emit::Plan)
    for (const PlanFunction &f : compiled->plan.functions)
      std::fprintf(stderr, "@%s: %zu kernels, arena %lld bytes + %lld bytes/token\n",
                   f.name.c_str(), f.steps.size(), (long long)f.staticBytes,
                   (long long)f.rowBytes);
  return 0;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values.empty() ? 0 : values[values.size() / 2];
}

int runText();

int runRun() {
  if (promptText.getNumOccurrences())
    return runText();
  if (runModel.empty())
    return fail(absl::InvalidArgumentError("no MODEL given"));
  if (device != "cpu" && device != "gpu")
    return fail(absl::InvalidArgumentError("--device must be cpu or gpu"));
  if (maxTokens < 0 || repeat < 1)
    return fail(absl::InvalidArgumentError("--max-tokens must be >= 0 and --repeat >= 1"));
  auto activation = parseDtypeFlag();
  if (!activation.ok())
    return fail(activation.status());
  auto prompt = parseIds(promptIds, "--prompt-ids");
  auto forced = parseIds(forceIds, "--force-ids");
  if (!prompt.ok() || !forced.ok())
    return fail(prompt.ok() ? forced.status() : prompt.status());
  SamplingParams params;
  params.temperature = temperature;
  params.topK = topK;
  params.topP = topP;
  params.seed = seed;
  if (absl::Status status = validate(params); !status.ok())
    return fail(status);

  EngineOptions options;
  options.device = device == "gpu" ? Device::Gpu : Device::Cpu;
  options.disabledPasses.assign(disablePass.begin(), disablePass.end());
    options.passOptions = passOptionMap();
  options.activationDtype = *activation;
  options.maxSeq = maxSeq;
  options.cudaGraphs = !noGraph;
  options.programmaticLaunch = !noPdl;
  options.spinWait = !blockingSync;
  options.asyncDecode = !noAsyncDecode;
  auto engine = loadEngine(runModel, options);
  if (!engine.ok())
    return fail(engine.status());
  Engine &e = **engine;

  if (promptLength > 0) {
    // Deterministic pseudo-random ids (benchmarks): a fixed LCG over the vocab.
    prompt->clear();
    uint64_t state = 12345;
    for (int i = 0; i < promptLength; ++i) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      prompt->push_back(int32_t((state >> 33) % uint64_t(e.vocabSize())));
    }
  }
  if (prompt->empty())
    return fail(absl::InvalidArgumentError("--prompt-ids is empty"));

  std::ofstream logitsOut;
  if (!dumpLogits.empty()) {
    logitsOut.open(dumpLogits, std::ios::binary | std::ios::trunc);
    if (!logitsOut)
      return fail(absl::UnavailableError("cannot write " + dumpLogits));
  }
  std::vector<double> ttfts, decodeRates;
  std::vector<int32_t> generated;
  for (int r = 0; r < repeat; ++r) {
    generated.clear();
    auto start = std::chrono::steady_clock::now();
    auto sample = e.prefill(*prompt, params);
    if (!sample.ok())
      return fail(sample.status());
    ttfts.push_back(secondsSince(start));
    if (r == 0 && logitsOut.is_open()) {
      auto logits = e.lastLogits();
      if (!logits.ok())
        return fail(logits.status());
      logitsOut.write(reinterpret_cast<const char *>(logits->data()),
                      logits->size() * sizeof(float));
    }
    start = std::chrono::steady_clock::now();
    int64_t position = prompt->size();
    if (maxTokens > 0)
      generated.push_back(sample->token);
    if (forced->empty() && !(r == 0 && logitsOut.is_open())) {
      // Each step fed the token sampled before: the engine runs ahead.
      absl::Status status =
          e.decodeStream(sample->token, position, maxTokens - 1, params,
                         [&](const SampleResult &next) {
                           generated.push_back(next.token);
                           return true;
                         });
      if (!status.ok())
        return fail(status);
    } else {
      // Teacher forcing or logits to dump: one step at a time.
      for (int i = 1; i < maxTokens; ++i) {
        int32_t next =
            size_t(i - 1) < forced->size() ? (*forced)[i - 1] : sample->token;
        sample = e.decode(next, position++, params);
        if (!sample.ok())
          return fail(sample.status());
        generated.push_back(sample->token);
        if (r == 0 && logitsOut.is_open()) {
          auto logits = e.lastLogits();
          if (!logits.ok())
            return fail(logits.status());
          logitsOut.write(reinterpret_cast<const char *>(logits->data()),
                          logits->size() * sizeof(float));
        }
      }
    }
    double seconds = secondsSince(start);
    if (maxTokens > 1)
      decodeRates.push_back((maxTokens - 1) / seconds);
  }

  if (profile > 0) {
    auto times = e.profileDecode(prompt->size(), profile);
    if (!times.ok())
      return fail(times.status());
    // By template: launches per token and total time per token.
    std::map<std::string, std::pair<int, double>> byTemplate;
    double total = 0;
    for (const StepTime &t : *times) {
      auto &[count, micros] = byTemplate[t.templateName];
      ++count;
      micros += t.microseconds;
      total += t.microseconds;
    }
    std::fprintf(stderr, "decode profile at position %zu (%d runs, events around "
                         "each step):\n  %-22s %8s %12s %7s\n",
                 prompt->size(), profile.getValue(), "template", "launches",
                 "us/token", "share");
    for (const auto &[name, entry] : byTemplate)
      std::fprintf(stderr, "  %-22s %8d %12.1f %6.1f%%\n", name.c_str(),
                   entry.first, entry.second, 100 * entry.second / total);
    std::fprintf(stderr, "  %-22s %8zu %12.1f\n", "sum of steps", times->size(),
                 total);
    // The whole step as the graph runs it, back to back: the GPU's time per
    // token; the rest of a generated token's time is the host round trip.
    auto replay = e.replayDecode(prompt->size(), 10 * profile);
    if (replay.ok())
      std::fprintf(stderr,
                   "  graph replay, back to back: %.3f ms/token on the GPU "
                   "(%.1f tok/s if the host cost nothing); host %.1f us per "
                   "cudaGraphLaunch\n",
                   replay->gpuMillis, 1000.0 / replay->gpuMillis,
                   replay->hostLaunchMicros);
  }

  const EngineStats &stats = e.stats();
  double ttft = median(ttfts), rate = median(decodeRates);
  std::printf("%s\n", absl::StrJoin(generated, ",").c_str());
  if (json) {
    std::printf(
        "{\"device\": \"%s\", \"gpu\": \"%s\", \"prompt_tokens\": %zu, "
        "\"new_tokens\": %d, \"repeat\": %d, \"ttft_ms\": %.4f, "
        "\"decode_tok_s\": %.2f, \"ms_per_token\": %.5f, \"load_s\": %.4f, "
        "\"compile_s\": %.4f, \"kernel_s\": %.4f, \"weights_s\": %.4f, "
        "\"weight_gb_s\": %.3f, \"weight_bytes\": %lld, \"nvrtc_compiles\": %lld, "
        "\"cache_hits\": %lld, \"aot_kernels\": %lld, \"source\": \"%s\", "
        "\"first_token_s\": %.4f}\n",
        device.c_str(), stats.deviceName.c_str(), prompt->size(), maxTokens.getValue(),
        repeat.getValue(), ttft * 1e3, rate, rate > 0 ? 1e3 / rate : 0.0,
        stats.totalLoadSeconds, stats.compileSeconds, stats.kernelSeconds,
        stats.weightSeconds, stats.weightSeconds > 0 ? stats.weightBytes / stats.weightSeconds / 1e9 : 0.0,
        (long long)stats.weightBytes, (long long)stats.nvrtcCompiles,
        (long long)stats.cacheHits, (long long)stats.aotKernels, stats.source.c_str(),
        stats.totalLoadSeconds + ttfts.front());
  }
  std::fprintf(stderr,
               "model: %s [%s%s%s]\n"
               "load: %.3f s (%s; compile %.3f s, kernels %.3f s: %lld NVRTC compiles, "
               "%lld cache hits, %lld from package; weights %.3f s, %.2f GB/s)\n"
               "prefill: %zu tokens, time to first token %.3f ms\n"
               "decode: %d tokens, %.1f tokens/s (%.3f ms/token)%s\n",
               runModel.c_str(), device.c_str(),
               stats.deviceName.empty() ? "" : ", ", stats.deviceName.c_str(),
               stats.totalLoadSeconds, stats.source.c_str(), stats.compileSeconds,
               stats.kernelSeconds, (long long)stats.nvrtcCompiles,
               (long long)stats.cacheHits, (long long)stats.aotKernels,
               stats.weightSeconds,
               stats.weightSeconds > 0 ? stats.weightBytes / stats.weightSeconds / 1e9 : 0.0,
               prompt->size(), ttft * 1e3, std::max(0, maxTokens - 1), rate,
               rate > 0 ? 1e3 / rate : 0.0,
               repeat > 1 ? absl::StrCat(" [median of ", repeat.getValue(), "]").c_str() : "");
  return 0;
}

//===----------------------------------------------------------------------===//
// Text: run --prompt, chat, serve
//===----------------------------------------------------------------------===//

absl::StatusOr<EngineOptions> engineOptionsFromFlags() {
  if (device != "cpu" && device != "gpu")
    return absl::InvalidArgumentError("--device must be cpu or gpu, not " + device);
  if (maxSeq < 2)
    return absl::InvalidArgumentError("--max-seq must be at least 2");
  TRENI_ASSIGN_OR_RETURN(std::optional<DType> activation, parseDtypeFlag());
  EngineOptions options;
  options.device = device == "gpu" ? Device::Gpu : Device::Cpu;
  options.disabledPasses.assign(disablePass.begin(), disablePass.end());
    options.passOptions = passOptionMap();
  options.activationDtype = activation;
  options.maxSeq = maxSeq;
  return options;
}

/// Tokenizer, template and engine, with a progress bar on a terminal.
absl::StatusOr<LoadedModel> loadForText(const std::string &model) {
  if (model.empty())
    return absl::InvalidArgumentError("no MODEL given");
  TRENI_ASSIGN_OR_RETURN(EngineOptions engineOptions, engineOptionsFromFlags());
  Progress progress("loading " + std::filesystem::path(model).filename().string(), 3);
  LoadOptions options;
  options.engine = engineOptions;
  options.tokenizerDir = tokenizerDir;
  options.chatTemplateFile = chatTemplateFile;
  options.progress = &progress;
  TRENI_ASSIGN_OR_RETURN(LoadedModel loaded, loadModel(model, options));
  const EngineStats &stats = loaded.engine->stats();
  progress.finish(absl::StrCat(stats.source.empty() ? "" : stats.source,
                               stats.compileSeconds > 0
                                   ? absl::StrFormat(", compiled in %.2f s",
                                                     stats.compileSeconds)
                                   : ""));
  return loaded;
}

absl::StatusOr<SamplingParams> samplingFromFlags() {
  SamplingParams params;
  params.temperature = temperature;
  params.topK = topK;
  params.topP = topP;
  params.seed = seed;
  TRENI_RETURN_IF_ERROR(validate(params));
  return params;
}

void printGenerationStats(const GenerationResult &result) {
  const GenerationTiming &t = result.awareness.timing;
  const Awareness &a = result.awareness;
  std::fprintf(stderr,
               "prefill: %lld tokens, time to first token %.3f ms\n"
               "decode: %lld tokens, %.1f tokens/s (%s)\n"
               "awareness: perplexity %.3f, mean entropy %.3f, max entropy %.3f, "
               "%zu of %lld tokens under p=%.2f\n",
               (long long)t.promptTokens, t.timeToFirstTokenSeconds() * 1e3,
               (long long)t.completionTokens, t.decodeTokensPerSecond(),
               toString(result.finishReason), a.perplexity, a.meanEntropy, a.maxEntropy,
               a.lowConfidencePositions.size(), (long long)a.numTokens,
               a.lowConfidenceThreshold);
}

/// Generation callback of `run --prompt` and `chat`: the text as it comes.
bool printDelta(std::string_view delta, absl::Span<const GeneratedToken>) {
  std::fwrite(delta.data(), 1, delta.size(), stdout);
  std::fflush(stdout);
  return true;
}

int runText() {
  auto params = samplingFromFlags();
  if (!params.ok())
    return fail(params.status());
  if (maxTokens < 1)
    return fail(absl::InvalidArgumentError("--max-tokens must be >= 1"));
  auto loaded = loadForText(runModel);
  if (!loaded.ok())
    return fail(loaded.status());
  Generator generator(*loaded->engine, *loaded->tokenizer,
                      {maxSeq, loaded->eosIds, !noPrefixCache});
  GenerationRequest request;
  request.promptIds = loaded->tokenizer->encode(promptText);
  request.sampling = *params;
  request.maxTokens = maxTokens;
  request.stop.assign(stopStrings.begin(), stopStrings.end());
  request.lowConfidenceThreshold = lowConfidence;
  auto result = generator.generate(request, printDelta);
  std::printf("\n");
  if (!result.ok())
    return fail(result.status());
  printGenerationStats(*result);
  return 0;
}

int runChat() {
  auto params = samplingFromFlags();
  if (!params.ok())
    return fail(params.status());
  auto loaded = loadForText(chatModel);
  if (!loaded.ok())
    return fail(loaded.status());
  if (!loaded->chatTemplate)
    return fail(absl::NotFoundError(
        "the model has no chat template (tokenizer_config.json chat_template); "
        "give one with --chat-template FILE"));
  Generator generator(*loaded->engine, *loaded->tokenizer,
                      {maxSeq, loaded->eosIds, !noPrefixCache});
  int64_t newTokens = maxTokens.getNumOccurrences() ? maxTokens : 512;
  nlohmann::json history = nlohmann::json::array();
  auto reset = [&] {
    history = nlohmann::json::array();
    if (!systemPrompt.empty())
      history.push_back({{"role", "system"}, {"content", systemPrompt}});
  };
  reset();
  bool interactive = isatty(fileno(stdin));
  if (interactive)
    std::fprintf(stderr, "chat: /exit to quit, /reset to start over\n");
  std::string line;
  uint64_t turn = 0;
  while (true) {
    if (interactive) {
      std::fprintf(stderr, "> ");
      std::fflush(stderr);
    }
    if (!std::getline(std::cin, line))
      break;
    if (line == "/exit" || line == "/quit")
      break;
    if (line == "/reset") {
      reset();
      std::fprintf(stderr, "(history cleared)\n");
      continue;
    }
    if (line.empty())
      continue;
    history.push_back({{"role", "user"}, {"content", line}});
    auto prompt = loaded->chatTemplate->render(history);
    if (!prompt.ok()) {
      history.erase(history.end() - 1);
      std::fprintf(stderr, "treni: error: %s\n",
                   std::string(prompt.status().message()).c_str());
      continue;
    }
    GenerationRequest request;
    // The template writes the special tokens itself.
    request.promptIds = loaded->tokenizer->encode(*prompt, /*addSpecialTokens=*/false);
    request.sampling = *params;
    request.sampling.seed = seed + turn++;
    request.maxTokens = newTokens;
    request.stop.assign(stopStrings.begin(), stopStrings.end());
    request.lowConfidenceThreshold = lowConfidence;
    auto result = generator.generate(request, printDelta);
    std::printf("\n");
    std::fflush(stdout);
    if (!result.ok()) {
      history.erase(history.end() - 1);
      std::fprintf(stderr, "treni: error: %s (/reset clears the history)\n",
                   std::string(result.status().message()).c_str());
      continue;
    }
    history.push_back({{"role", "assistant"}, {"content", result->text}});
    const GenerationTiming &t = result->awareness.timing;
    std::fprintf(
        stderr,
        "[%lld tokens, TTFT %.1f ms (%lld of %lld prompt tokens cached), "
        "%.1f tok/s, perplexity %.2f]\n",
        (long long)t.completionTokens, t.timeToFirstTokenSeconds() * 1e3,
        (long long)t.cachedPromptTokens, (long long)t.promptTokens,
        t.decodeTokensPerSecond(), result->awareness.perplexity);
  }
  return 0;
}

std::atomic<bool> stopRequested{false};
void onStopSignal(int) { stopRequested = true; }

int runServe() {
  if (queueSize < 0 || requestTimeout <= 0 || maxBodyKiB < 1 || port < 0 ||
      port > 65535)
    return fail(absl::InvalidArgumentError(
        "--queue-size must be >= 0, --request-timeout > 0, --max-body-kib >= 1, "
        "--port in 0..65535"));
  if (!(headerTimeout > 0) || !(bodyTimeout > 0) || maxConnectionsPerClient < 1)
    return fail(absl::InvalidArgumentError(
        "--header-timeout and --body-timeout must be > 0, "
        "--max-connections-per-client >= 1"));
  if (!(lowConfidence >= 0 && lowConfidence <= 1))
    return fail(absl::InvalidArgumentError("--low-confidence must be in [0, 1]"));
  auto loaded = loadForText(serveModel);
  if (!loaded.ok())
    return fail(loaded.status());
  Generator generator(*loaded->engine, *loaded->tokenizer,
                      {maxSeq, loaded->eosIds, !noPrefixCache});
  ServedModel model;
  model.name = servedModelName.empty()
                   ? std::filesystem::path(serveModel.getValue()).filename().string()
                   : servedModelName.getValue();
  if (model.name.empty())
    model.name = std::filesystem::path(serveModel.getValue()).parent_path().filename().string();
  model.tokenizer = loaded->tokenizer.get();
  model.chatTemplate = loaded->chatTemplate.get();
  model.toolFormat = servedToolCallFormat(loaded->chatTemplateSource);
  model.maxSeq = maxSeq;
  model.lowConfidenceThreshold = lowConfidence;
  ServerOptions options;
  options.host = host;
  options.port = port;
  options.queueSize = queueSize;
  options.requestTimeoutSeconds = requestTimeout;
  options.maxBodyBytes = size_t(maxBodyKiB) * 1024;
  options.tokenDelay = std::chrono::milliseconds(tokenDelayMs.getValue());
  options.headerTimeoutSeconds = headerTimeout;
  options.bodyTimeoutSeconds = bodyTimeout;
  options.maxConnectionsPerClient = maxConnectionsPerClient;
  options.allowedHosts.assign(allowedHosts.begin(), allowedHosts.end());
  options.apiKey = apiKey;
  if (const char *fromEnvironment = std::getenv("TRENI_API_KEY");
      options.apiKey.empty() && fromEnvironment)
    options.apiKey = fromEnvironment;
  HttpServer server(generator, model, options);
  ToolRegistry agentTools; // POST /v1/agent/run (runtime/agent/agent_http.h)
  if (!serveToolsConfig.empty() && !enableAgentApi)
    return fail(absl::InvalidArgumentError("--tools-config needs --enable-agent-api"));
  if (!serveToolsConfig.empty())
    if (absl::Status status = configureAgentToolsFromFile(agentTools, serveToolsConfig);
        !status.ok())
      return fail(status);
  if (enableAgentApi)
    addAgentRoute(server, generator, model, agentTools);
  if (absl::Status status = server.start(); !status.ok())
    return fail(status);
  std::signal(SIGINT, onStopSignal);
  std::signal(SIGTERM, onStopSignal);
  std::fprintf(stderr,
               "treni serve: listening on http://%s:%d (model '%s', %s, max-seq %d, "
               "queue %d)%s\n",
               host.c_str(), server.port(), model.name.c_str(), device.c_str(),
               maxSeq.getValue(), queueSize.getValue(),
               loaded->chatTemplate ? "" : " [no chat template: /v1/completions only]");
  std::fflush(stderr);
  while (!stopRequested)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::fprintf(stderr, "treni serve: shutting down\n");
  server.stop();
  std::fprintf(stderr, "treni serve: stopped\n");
  return 0;
}
} // namespace

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::ParseCommandLineOptions(argc, argv, "treni: compile and run language models\n");
  if (compileCommand)
    return runCompile();
  if (runCommand)
    return runRun();
  if (treni::agentCommandSelected())
    return treni::runAgentCommand();
  if (chatCommand)
    return runChat();
  if (serveCommand)
    return runServe();
  cl::PrintHelpMessage();
  return 1;
}
