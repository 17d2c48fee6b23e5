//===- fault_injection.cpp - per-tool injected failures and delays --------===//

#include "runtime/tools/fault_injection.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace treni {

double deterministicUnit(uint64_t seed, uint64_t index) {
  uint64_t z = seed + (index + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-53;
}

absl::StatusOr<FaultSpec> FaultSpec::fromJson(const nlohmann::json &json) {
  if (!json.is_object())
    return absl::InvalidArgumentError(
        absl::StrCat("fault spec must be an object, got ", json.type_name()));
  FaultSpec spec;
  auto count = [&](const std::string &key, const nlohmann::json &value,
                   int64_t &out) -> absl::Status {
    if (!value.is_number_integer() || value.get<int64_t>() < 0)
      return absl::InvalidArgumentError(absl::StrCat(
          "fault spec: \"", key, "\" must be a non-negative integer"));
    out = value.get<int64_t>();
    return absl::OkStatus();
  };
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string &key = it.key();
    absl::Status status;
    if (key == "fail_every") {
      status = count(key, *it, spec.failEvery);
    } else if (key == "delay_every") {
      status = count(key, *it, spec.delayEvery);
      if (status.ok() && spec.delayEvery == 0)
        status = absl::InvalidArgumentError(
            "fault spec: \"delay_every\" must be at least 1");
    } else if (key == "delay_ms") {
      int64_t ms = 0;
      status = count(key, *it, ms);
      spec.delay = std::chrono::milliseconds(ms);
    } else if (key == "seed") {
      int64_t seed = 0;
      status = count(key, *it, seed);
      spec.seed = uint64_t(seed);
    } else if (key == "fail_probability") {
      if (!it->is_number() || !(it->get<double>() >= 0.0) ||
          it->get<double>() > 1.0)
        status = absl::InvalidArgumentError(
            "fault spec: \"fail_probability\" must be a number in [0, 1]");
      else
        spec.failProbability = it->get<double>();
    } else {
      status = absl::InvalidArgumentError(absl::StrCat(
          "fault spec: unknown key \"", key,
          "\" (expected fail_every, fail_probability, delay_ms, delay_every, "
          "seed)"));
    }
    if (!status.ok())
      return status;
  }
  return spec;
}

nlohmann::json FaultSpec::toJson() const {
  return {{"fail_every", failEvery},
          {"fail_probability", failProbability},
          {"delay_ms", delay.count()},
          {"delay_every", delayEvery},
          {"seed", seed}};
}

void FaultInjector::set(std::string_view tool, const FaultSpec &spec) {
  std::lock_guard<std::mutex> lock(mutex_);
  specs_[std::string(tool)] = spec;
  if (tool == "*")
    counters_.clear();
  else
    counters_.erase(std::string(tool));
}

void FaultInjector::clear(std::string_view tool) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (auto it = specs_.find(tool); it != specs_.end())
    specs_.erase(it);
}

void FaultInjector::clearAll() {
  std::lock_guard<std::mutex> lock(mutex_);
  specs_.clear();
  counters_.clear();
}

absl::Status FaultInjector::loadJson(const nlohmann::json &json) {
  if (!json.is_object())
    return absl::InvalidArgumentError(absl::StrCat(
        "fault injection spec must be an object of tool name -> spec, got ",
        json.type_name()));
  std::map<std::string, FaultSpec, std::less<>> specs;
  for (auto it = json.begin(); it != json.end(); ++it) {
    absl::StatusOr<FaultSpec> spec = FaultSpec::fromJson(*it);
    if (!spec.ok())
      return absl::InvalidArgumentError(absl::StrCat(
          "fault injection for '", it.key(), "': ", spec.status().message()));
    specs[it.key()] = *spec;
  }
  std::lock_guard<std::mutex> lock(mutex_);
  specs_ = std::move(specs);
  counters_.clear();
  return absl::OkStatus();
}

nlohmann::json FaultInjector::toJson() const {
  std::lock_guard<std::mutex> lock(mutex_);
  nlohmann::json json = nlohmann::json::object();
  for (const auto &[tool, spec] : specs_)
    json[tool] = spec.toJson();
  return json;
}

FaultDecision FaultInjector::next(std::string_view tool) {
  FaultSpec spec;
  FaultDecision decision;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = specs_.find(tool);
    if (it == specs_.end())
      it = specs_.find(std::string_view("*"));
    if (it == specs_.end() || !it->second.active())
      return decision;
    spec = it->second;
    auto counter = counters_.find(tool);
    if (counter == counters_.end())
      counter = counters_.emplace(std::string(tool), 0).first;
    decision.attempt = ++counter->second;
  }
  int64_t n = decision.attempt;
  if (spec.delay.count() > 0 && spec.delayEvery > 0 && n % spec.delayEvery == 0)
    decision.delay = spec.delay;
  if (spec.failEvery > 0 && n % spec.failEvery == 0) {
    decision.fail = true;
    decision.reason =
        absl::StrCat("fail_every ", spec.failEvery, " (attempt ", n, ")");
  } else if (spec.failProbability > 0 &&
             deterministicUnit(spec.seed, uint64_t(n)) < spec.failProbability) {
    decision.fail = true;
    decision.reason = absl::StrCat("fail_probability ", spec.failProbability,
                                   " (attempt ", n, ", seed ", spec.seed, ")");
  }
  return decision;
}

} // namespace treni
