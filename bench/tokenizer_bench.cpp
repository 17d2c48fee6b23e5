//===- tokenizer_bench.cpp - tokenizer load, encode and decode speed ------===//
//
//   build/bin/tokenizer_bench [TOKENIZERS_DIR] [CORPUS_JSONL] [SECONDS] [NAME]
//
// For each real tokenizer (qwen2_5, qwen3, llama3, llama3_2 under
// TOKENIZERS_DIR, default build/tokenizers) it reports the load time and the
// single-thread throughput, in MB of UTF-8 input per CPU second, of encoding
// the parity corpus (test/tokenizers/corpus.jsonl, all cases joined) on a fresh
// tokenizer (cold word cache: first pass) and warm (repeated for SECONDS,
// default 2), and of decoding the resulting ids. NAME picks one tokenizer.
//
//===----------------------------------------------------------------------===//

#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "runtime/text/tokenizer.h"
#include "support/utf8.h"
#include <nlohmann/json.hpp>

namespace {

/// Thread CPU time, not wall time: the build machines are shared, and CPU
/// time is what a busy neighbour does not inflate.
struct Clock {
  using time_point = double;
  static double now() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }
};

double secondsSince(double start) { return Clock::now() - start; }

std::string fromHex(const std::string &hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(char(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

/// All corpus cases joined by blank lines (raw bytes kept as they are).
std::string loadCorpus(const std::string &path) {
  std::ifstream file(path, std::ios::binary);
  std::string line, text;
  while (std::getline(file, line)) {
    if (line.empty())
      continue;
    nlohmann::json entry = nlohmann::json::parse(line, nullptr, false);
    if (entry.is_discarded())
      continue;
    if (!text.empty())
      text += "\n\n";
    text += entry.contains("hex") ? fromHex(entry["hex"].get<std::string>())
                                  : entry["text"].get<std::string>();
  }
  return text;
}

} // namespace

int main(int argc, char **argv) {
  std::string dir = argc > 1 ? argv[1] : "build/tokenizers";
  std::string corpusPath = argc > 2 ? argv[2] : "test/tokenizers/corpus.jsonl";
  double seconds = argc > 3 ? std::stod(argv[3]) : 2.0;
  std::string only = argc > 4 ? argv[4] : "";
  std::string unit = loadCorpus(corpusPath);
  if (unit.empty()) {
    std::fprintf(stderr, "tokenizer_bench: no corpus at %s\n",
                 corpusPath.c_str());
    return 1;
  }
  // ~1 MB of text: the corpus repeated.
  std::string text;
  while (text.size() < (1 << 20))
    text += unit + "\n\n";
  double megabytes = text.size() / 1e6;
  std::printf("corpus: %zu bytes per pass\n", text.size());
  std::printf("%-9s %8s %10s %12s %12s %12s\n", "name", "load s", "ids",
              "cold MB/s", "warm MB/s", "decode MB/s");
  for (const char *name : {"qwen2_5", "qwen3", "llama3", "llama3_2"}) {
    if (!only.empty() && only != name)
      continue;
    auto start = Clock::now();
    auto tokenizer =
        treni::Tokenizer::fromFile(dir + "/" + name + "/tokenizer.json");
    double loadSeconds = secondsSince(start);
    if (!tokenizer.ok()) {
      std::fprintf(stderr, "tokenizer_bench: %s\n",
                   std::string(tokenizer.status().message()).c_str());
      return 1;
    }
    start = Clock::now();
    std::vector<int32_t> ids = (*tokenizer)->encode(text);
    double coldSeconds = secondsSince(start);

    int passes = 0;
    start = Clock::now();
    do {
      ids = (*tokenizer)->encode(text);
      ++passes;
    } while (secondsSince(start) < seconds);
    double warmSeconds = secondsSince(start) / passes;

    int decodes = 0;
    size_t decodedBytes = 0;
    start = Clock::now();
    do {
      decodedBytes = (*tokenizer)->decode(ids)->size();
      ++decodes;
    } while (secondsSince(start) < seconds / 2);
    double decodeSeconds = secondsSince(start) / decodes;

    std::printf("%-9s %8.2f %10zu %12.1f %12.1f %12.1f\n", name, loadSeconds,
                ids.size(), megabytes / coldSeconds, megabytes / warmSeconds,
                decodedBytes / 1e6 / decodeSeconds);
  }
  return 0;
}
