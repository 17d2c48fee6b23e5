//===- fixture_plans.h - fixture plans for executor tests -------*- C++ -*-===//
//
// What the CPU executor tests share: a fixture model's plan (with passes of
// the default pipeline left out when asked), executors of it, and
// deterministic token ids that every fixture's vocabulary holds.
//
//===----------------------------------------------------------------------===//
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "codegen/mlir/Compiler.h"
#include "runtime/exec/cpu_executor.h"
#include "gtest/gtest.h"

namespace treni::testing_util {

/// The fixture's plan; `disabled` passes are left out of the pipeline.
inline Plan compileFixturePlan(const std::string &dir,
                               std::vector<std::string> disabled = {}) {
  mlir::MLIRContext context;
  CompileOptions options;
  options.disabledPasses = std::move(disabled);
  auto compiled = compileModelDir(context, dir, options);
  EXPECT_TRUE(compiled.ok()) << compiled.status();
  return compiled.ok() ? compiled->plan : Plan{};
}

/// Whether some step of the plan runs template `name`; only function
/// `function` when one is named.
inline bool usesTemplate(const Plan &plan, const std::string &name,
                         const std::string &function = "") {
  for (const PlanFunction &f : plan.functions)
    if (function.empty() || f.name == function)
      for (const PlanStep &step : f.steps)
        if (step.templateName == name)
          return true;
  return false;
}

/// A contiguous executor of `maxSeq` positions, or null (a test failure).
inline std::unique_ptr<CpuExecutor>
makeContiguous(const Plan &plan, const std::string &dir, int64_t maxSeq = 256) {
  auto executor = CpuExecutor::create(plan, dir, maxSeq);
  EXPECT_TRUE(executor.ok()) << executor.status();
  return executor.ok() ? std::move(*executor) : nullptr;
}

/// A paged executor of `numBlocks` blocks of `blockTokens` rows, or null (a
/// test failure).
inline std::unique_ptr<CpuExecutor> makePaged(const Plan &plan,
                                              const std::string &dir,
                                              int64_t numBlocks,
                                              int64_t blockTokens) {
  auto executor = CpuExecutor::createPaged(plan, dir, numBlocks, blockTokens);
  EXPECT_TRUE(executor.ok()) << executor.status();
  return executor.ok() ? std::move(*executor) : nullptr;
}

/// `count` token ids inside every fixture's vocabulary, different per seed.
inline std::vector<int32_t> fixtureTokens(int64_t count, int32_t seed) {
  std::vector<int32_t> ids(count);
  for (int64_t i = 0; i < count; ++i)
    ids[i] = int32_t((seed * 131 + i * 37 + i * i * 7) % 383);
  return ids;
}

} // namespace treni::testing_util
