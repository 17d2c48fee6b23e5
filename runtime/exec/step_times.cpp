//===- step_times.cpp - profile tables of plan steps ----------------------===//

#include <map>

#include "absl/strings/str_format.h"
#include "runtime/exec/gpu_executor.h"

namespace treni {

std::string formatStepTimes(absl::Span<const StepTime> times) {
  struct Sum {
    int launches = 0;
    double micros = 0, flops = 0;
  };
  std::map<std::string, Sum> byTemplate, byGemmShape;
  double total = 0;
  for (const StepTime &t : times) {
    for (Sum *sum : {&byTemplate[t.templateName],
                     t.shape.empty() ? nullptr : &byGemmShape[t.shape]}) {
      if (!sum)
        continue;
      ++sum->launches;
      sum->micros += t.microseconds;
      sum->flops += t.flops;
    }
    total += t.microseconds;
  }
  auto line = [&](const std::string &name, const Sum &sum) {
    return absl::StrFormat(
        "  %-36s %8d %12.1f %6.1f%% %s\n", name, sum.launches, sum.micros,
        total > 0 ? 100 * sum.micros / total : 0.0,
        sum.flops > 0 && sum.micros > 0
            ? absl::StrFormat("%8.1f", sum.flops / sum.micros / 1e6)
            : std::string());
  };
  std::string text = absl::StrFormat("  %-36s %8s %12s %7s %8s\n", "template",
                                     "launches", "us", "share", "TFLOP/s");
  for (const auto &[name, sum] : byTemplate)
    text += line(name, sum);
  for (const auto &[shape, sum] : byGemmShape)
    text += line("  gemm " + shape, sum);
  text += absl::StrFormat("  %-36s %8zu %12.1f\n", "sum of steps", times.size(),
                          total);
  return text;
}

} // namespace treni
