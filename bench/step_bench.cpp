//===- step_bench.cpp - batched engine steps (continuous batching) --------===//
//
//   treni-step-bench MODEL_DIR [--rows 1,2,4,...,256] [--context 512]
//       [--chunk 0] [--iterations 20] [--max-seq 4096] [--no-graphs]
//       [--gemm-rows 0] [--gemm-tuning] [--seq1-tensor-cores] [--chunk-flash]
//       [--profile]
//
// Times what one continuous-batching step costs on the GPU, without the
// server: `rows` sequences each at position `context` (their K/V rows are
// whatever the pool holds: attention reads them all the same) decode one
// token each, drawn greedily on the GPU (StepRunner::runSampled), step after
// step; with --chunk N every step also carries an N-token prompt chunk of
// one more sequence (unsampled), as a step that admits a prompt does. Prints
// per row count the median step time, the tokens per second it gives
// (rows / step time) and the weight bytes read per second (each step reads
// every weight once). One `STEP` line per row count. --gemm-rows N: GEMMs
// of at most N rows run on gemm_rows (0: all on cuBLASLt); --gemm-tuning:
// cuBLASLt's fastest of its first eight algorithms, timed before a graph is
// captured; --seq1-tensor-cores: decode attention on the tensor cores;
// --chunk-flash: the chunk's rows attend through attention_flash.
// --profile: after each row count, the step's launches one by one, timed by
// events, summed by template and GEMM shape.
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "runtime/batch/kv_block_pool.h"
#include "runtime/exec/engine_loader.h"
#include "runtime/exec/gpu_step_runner.h"

namespace {
using namespace treni;

struct Options {
  std::string model;
  std::vector<int64_t> rows = {1, 2, 4, 8, 16, 32, 64, 128, 256};
  int64_t context = 512, chunk = 0, iterations = 20, maxSeq = 4096;
  int64_t gemmRows = 0;
  bool graphs = true, profile = false, gemmTuning = false,
       seq1TensorCores = false, chunkFlash = false;
};

[[noreturn]] void usage(const char *why) {
  std::fprintf(stderr,
               "treni-step-bench: %s\nusage: treni-step-bench MODEL_DIR "
               "[--rows 1,2,...] [--context N] [--chunk N] [--iterations N] "
               "[--max-seq N] [--no-graphs] [--gemm-rows N] [--gemm-tuning] "
               "[--seq1-tensor-cores] [--chunk-flash] [--profile]\n",
               why);
  std::exit(2);
}

int64_t number(const char *text) {
  int64_t value = 0;
  if (!absl::SimpleAtoi(text, &value) || value < 0)
    usage("expected a non-negative number");
  return value;
}

Options parse(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto next = [&]() -> const char * {
      if (i + 1 >= argc)
        usage(("missing value for " + arg).c_str());
      return argv[++i];
    };
    if (arg == "--rows") {
      o.rows.clear();
      for (absl::string_view part : absl::StrSplit(next(), ','))
        o.rows.push_back(number(std::string(part).c_str()));
    } else if (arg == "--context") {
      o.context = number(next());
    } else if (arg == "--chunk") {
      o.chunk = number(next());
    } else if (arg == "--iterations") {
      o.iterations = std::max<int64_t>(1, number(next()));
    } else if (arg == "--max-seq") {
      o.maxSeq = number(next());
    } else if (arg == "--no-graphs") {
      o.graphs = false;
    } else if (arg == "--gemm-rows") {
      o.gemmRows = number(next());
    } else if (arg == "--gemm-tuning") {
      o.gemmTuning = true;
    } else if (arg == "--seq1-tensor-cores") {
      o.seq1TensorCores = true;
    } else if (arg == "--chunk-flash") {
      o.chunkFlash = true;
    } else if (arg == "--profile") {
      o.profile = true;
    } else if (!arg.empty() && arg[0] != '-' && o.model.empty()) {
      o.model = arg;
    } else {
      usage(("unknown argument " + arg).c_str());
    }
  }
  if (o.model.empty())
    usage("no model directory");
  return o;
}

} // namespace

int main(int argc, char **argv) {
  Options o = parse(argc, argv);
  const int64_t maxRows = *std::max_element(o.rows.begin(), o.rows.end());
  const int64_t span = o.context + o.iterations + 4;
  if (span > o.maxSeq || o.chunk > o.maxSeq)
    usage("--context plus the steps (and --chunk) must fit --max-seq");
  EngineOptions options;
  options.device = Device::Gpu;
  options.maxSeq = o.maxSeq;
  options.cudaGraphs = o.graphs;
  options.gemmRowsMax = o.gemmRows;
  options.gemmTuning = o.gemmTuning;
  options.seq1TensorCores = o.seq1TensorCores;
  options.chunkFlash = o.chunkFlash;
  auto engine = loadEngine(o.model, options);
  if (!engine.ok()) {
    std::fprintf(stderr, "treni-step-bench: %s\n",
                 std::string(engine.status().message()).c_str());
    return 1;
  }
  const int64_t perSequence = kvBlocksFor(span);
  const int64_t chunkBlocks = kvBlocksFor(std::max<int64_t>(o.chunk, 1));
  const int64_t blocks = maxRows * perSequence + chunkBlocks;
  auto runner = (*engine)->createStepRunner(blocks, maxRows + o.chunk);
  if (!runner.ok()) {
    std::fprintf(stderr, "treni-step-bench: %s\n",
                 std::string(runner.status().message()).c_str());
    return 1;
  }
  const double weightBytes = double((*engine)->stats().weightBytes);
  std::printf("STEP %s on %s: context %lld, chunk %lld, %s, gemm_rows up to "
              "%lld rows, %s, seq1 attention on %s%s, weights %.2f GB\n",
              o.model.c_str(), (*engine)->stats().deviceName.c_str(),
              (long long)o.context, (long long)o.chunk,
              o.graphs ? "graphs" : "no graphs", (long long)o.gemmRows,
              o.gemmTuning ? "GEMMs tuned" : "GEMMs untuned",
              o.seq1TensorCores ? "tensor cores" : "CUDA cores",
              o.chunkFlash ? ", chunk rows on attention_flash" : "",
              weightBytes / 1e9);
  std::printf("STEP  rows   ms/step     tok/s  weights GB/s\n");
  for (int64_t rows : o.rows) {
    std::vector<double> times;
    auto makePlan = [&](int64_t it) {
      StepPlan plan;
      int64_t position = o.context + std::max<int64_t>(it, 0);
      for (int64_t r = 0; r < rows; ++r) {
        BlockTableRef ref{int64_t(plan.blockTables.size()), perSequence};
        for (int64_t b = 0; b < perSequence; ++b)
          plan.blockTables.push_back(KvBlockId(r * perSequence + b));
        plan.decodes.push_back(
            {SequenceId(r), position, int32_t((r * 31 + it + 3) % 1000), ref});
      }
      if (o.chunk > 0) {
        BlockTableRef ref{int64_t(plan.blockTables.size()), chunkBlocks};
        for (int64_t b = 0; b < chunkBlocks; ++b)
          plan.blockTables.push_back(KvBlockId(maxRows * perSequence + b));
        std::vector<int32_t> tokens(o.chunk);
        for (int64_t i = 0; i < o.chunk; ++i)
          tokens[i] = int32_t((i * 7) % 1000);
        plan.prefills.push_back(
            {SequenceId(rows), 0, std::move(tokens), false, ref});
      }
      return plan;
    };
    for (int64_t it = -3; it < o.iterations; ++it) {
      StepPlan plan = makePlan(it);
      std::vector<RowSampling> sampling(rows);
      auto start = std::chrono::steady_clock::now();
      auto drawn = (*runner)->runSampled(plan, sampling);
      double ms = std::chrono::duration<double, std::milli>(
                      std::chrono::steady_clock::now() - start)
                      .count();
      if (!drawn.ok()) {
        std::fprintf(stderr, "treni-step-bench: %s\n",
                     std::string(drawn.status().message()).c_str());
        return 1;
      }
      if (it >= 0)
        times.push_back(ms);
    }
    std::sort(times.begin(), times.end());
    double median = times[times.size() / 2];
    std::printf("STEP %5lld %9.3f %9.1f %13.1f\n", (long long)rows, median,
                rows * 1e3 / median, weightBytes / (median * 1e6));
    if (o.profile) {
      auto *gpu = dynamic_cast<GpuStepRunner *>(runner->get());
      auto times = gpu ? gpu->profile(makePlan(o.iterations), 10)
                       : absl::UnimplementedError("not a GPU step runner");
      if (!times.ok()) {
        std::fprintf(stderr, "treni-step-bench: %s\n",
                     std::string(times.status().message()).c_str());
        return 1;
      }
      std::printf("PROFILE %lld rows (10 runs, events around each launch):\n%s",
                  (long long)rows, formatStepTimes(*times).c_str());
    }
  }
  return 0;
}
