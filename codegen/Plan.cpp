//===- Plan.cpp - plan serialisation -------------------------------------===//
//
// JSON via nlohmann. Every index read back is range-checked, so a corrupted or
// hand-edited plan fails here with a message instead of indexing out of
// bounds in an executor.
//
//===----------------------------------------------------------------------===//

#include "codegen/Plan.h"
#include "support/status.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace treni {
using nlohmann::json;

namespace {
json constantToJson(const PlanConstant &value) {
  // Tag floats so 1.0 is not read back as the integer 1.
  return std::visit(
      [](const auto &v) -> json {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, double>)
          return json{{"f", v}};
        else
          return json(v);
      },
      value);
}

absl::StatusOr<PlanConstant> constantFromJson(const json &value) {
  if (value.is_boolean())
    return PlanConstant(value.get<bool>());
  if (value.is_number_integer())
    return PlanConstant(value.get<int64_t>());
  if (value.is_string())
    return PlanConstant(value.get<std::string>());
  if (value.is_object() && value.size() == 1 && value.contains("f") &&
      value["f"].is_number())
    return PlanConstant(value["f"].get<double>());
  return absl::InvalidArgumentError(
      absl::StrCat("plan: bad constant ", value.dump()));
}

json constantsToJson(const std::map<std::string, PlanConstant> &constants) {
  json out = json::object();
  for (const auto &[key, value] : constants)
    out[key] = constantToJson(value);
  return out;
}

absl::Status constantsFromJson(const json &in,
                               std::map<std::string, PlanConstant> &out) {
  if (!in.is_object())
    return absl::InvalidArgumentError("plan: constants must be an object");
  for (const auto &[key, value] : in.items()) {
    auto constant = constantFromJson(value);
    if (!constant.ok())
      return constant.status();
    out[key] = *constant;
  }
  return absl::OkStatus();
}

template <typename T>
absl::StatusOr<T> typedConstant(const PlanStep &step, const std::string &key) {
  auto it = step.constants.find(key);
  if (it == step.constants.end() || !std::holds_alternative<T>(it->second))
    return absl::InvalidArgumentError(
        absl::StrCat("kernel '", step.templateName, "' (", step.origin,
                     "): missing or mistyped constant '", key, "'"));
  return std::get<T>(it->second);
}
} // namespace

absl::StatusOr<int64_t> PlanStep::intConstant(const std::string &key) const {
  return typedConstant<int64_t>(*this, key);
}
absl::StatusOr<double> PlanStep::floatConstant(const std::string &key) const {
  return typedConstant<double>(*this, key);
}
absl::StatusOr<std::string>
PlanStep::stringConstant(const std::string &key) const {
  return typedConstant<std::string>(*this, key);
}
absl::StatusOr<bool> PlanStep::boolConstant(const std::string &key) const {
  return typedConstant<bool>(*this, key);
}

int64_t PlanFunction::bufferOffset(int64_t index, int64_t tokens) const {
  const PlanBuffer &buffer = buffers[index];
  return buffer.dynamic ? staticBytes + tokens * buffer.offset : buffer.offset;
}

const PlanFunction *Plan::function(const std::string &name) const {
  for (const PlanFunction &f : functions)
    if (f.name == name)
      return &f;
  return nullptr;
}

const PlanKvCache *Plan::cache(const std::string &name) const {
  for (const PlanKvCache &c : caches)
    if (c.name == name)
      return &c;
  return nullptr;
}

int64_t Plan::embedColumns() const {
  const PlanFunction *embed = function("embed");
  if (!embed || embed->outputs.size() != 1)
    return 0;
  const PlanBuffer &output = embed->buffers[embed->outputs[0]];
  return output.shape.size() == 2 ? output.shape[1] : 0;
}

int64_t Plan::maxPositions(int64_t fallback) const {
  auto found = model.find("max_position_embeddings");
  if (found == model.end())
    return fallback;
  const int64_t *value = std::get_if<int64_t>(&found->second);
  return value && *value >= 2 ? *value : fallback;
}

std::string serializePlan(const Plan &plan) {
  json out;
  out["version"] = plan.version;
  out["model"] = constantsToJson(plan.model);
  json weights = json::array();
  auto weightToJson = [](const PlanWeight &w) {
    return json{{"name", w.name},
                {"file", w.file},
                {"offset", w.offset},
                {"dtype", w.dtype},
                {"shape", w.shape}};
  };
  for (const PlanWeight &w : plan.weights) {
    json entry = weightToJson(w);
    if (!w.parts.empty()) {
      json parts = json::array();
      for (const PlanWeight &part : w.parts)
        parts.push_back(weightToJson(part));
      entry["parts"] = parts;
    }
    weights.push_back(entry);
  }
  out["weights"] = weights;
  json caches = json::array();
  for (const PlanKvCache &c : plan.caches)
    caches.push_back({{"name", c.name},
                      {"num_layers", c.numLayers},
                      {"num_kv_heads", c.numKvHeads},
                      {"head_dim", c.headDim},
                      {"dtype", c.dtype}});
  out["kv_caches"] = caches;
  json functions = json::array();
  for (const PlanFunction &f : plan.functions) {
    json buffers = json::array();
    for (const PlanBuffer &b : f.buffers)
      buffers.push_back({{"dtype", b.dtype},
                         {"shape", b.shape},
                         {"dynamic", b.dynamic},
                         {"offset", b.offset}});
    json steps = json::array();
    for (const PlanStep &s : f.steps) {
      json inputs = json::array();
      for (const PlanOperand &o : s.inputs)
        inputs.push_back(
            {o.kind == PlanOperand::Kind::Weight ? "w" : "b", o.index});
      steps.push_back({{"template", s.templateName},
                       {"origin", s.origin},
                       {"constants", constantsToJson(s.constants)},
                       {"inputs", inputs},
                       {"outputs", s.outputs}});
    }
    functions.push_back({{"name", f.name},
                         {"static_bytes", f.staticBytes},
                         {"row_bytes", f.rowBytes},
                         {"inputs", f.inputs},
                         {"outputs", f.outputs},
                         {"buffers", buffers},
                         {"steps", steps}});
  }
  out["functions"] = functions;
  return out.dump(1);
}

namespace {
/// Reads `json[key]` as T; every failure names the path.
template <typename T>
absl::Status read(const json &object, const char *key, T &out,
                  const std::string &where) {
  if (!object.is_object() || !object.contains(key))
    return absl::InvalidArgumentError(
        absl::StrCat("plan: ", where, " lacks '", key, "'"));
  try {
    out = object.at(key).get<T>();
  } catch (const json::exception &e) {
    return absl::InvalidArgumentError(
        absl::StrCat("plan: ", where, ".", key, ": ", e.what()));
  }
  return absl::OkStatus();
}

absl::Status checkIndex(int64_t index, size_t size, const std::string &what) {
  if (index < 0 || static_cast<size_t>(index) >= size)
    return absl::InvalidArgumentError(absl::StrCat(
        "plan: ", what, " index ", index, " out of range [0, ", size, ")"));
  return absl::OkStatus();
}

absl::StatusOr<PlanFunction> parseFunction(const json &in, size_t numWeights) {
  PlanFunction f;
  TRENI_RETURN_IF_ERROR(read(in, "name", f.name, "function"));
  std::string where = "function " + f.name;
  TRENI_RETURN_IF_ERROR(read(in, "static_bytes", f.staticBytes, where));
  TRENI_RETURN_IF_ERROR(read(in, "row_bytes", f.rowBytes, where));
  TRENI_RETURN_IF_ERROR(read(in, "inputs", f.inputs, where));
  TRENI_RETURN_IF_ERROR(read(in, "outputs", f.outputs, where));
  if (!in.contains("buffers") || !in["buffers"].is_array() ||
      !in.contains("steps") || !in["steps"].is_array())
    return absl::InvalidArgumentError("plan: " + where +
                                      " needs buffers and steps arrays");
  for (const json &b : in["buffers"]) {
    PlanBuffer buffer;
    TRENI_RETURN_IF_ERROR(read(b, "dtype", buffer.dtype, where + " buffer"));
    TRENI_RETURN_IF_ERROR(read(b, "shape", buffer.shape, where + " buffer"));
    TRENI_RETURN_IF_ERROR(
        read(b, "dynamic", buffer.dynamic, where + " buffer"));
    TRENI_RETURN_IF_ERROR(read(b, "offset", buffer.offset, where + " buffer"));
    if (buffer.offset < 0)
      return absl::InvalidArgumentError("plan: negative buffer offset in " +
                                        where);
    f.buffers.push_back(std::move(buffer));
  }
  for (int64_t index : f.inputs)
    TRENI_RETURN_IF_ERROR(
        checkIndex(index, f.buffers.size(), where + " input"));
  for (int64_t index : f.outputs)
    TRENI_RETURN_IF_ERROR(
        checkIndex(index, f.buffers.size(), where + " output"));
  for (const json &s : in["steps"]) {
    PlanStep step;
    std::string stepWhere = where + " step";
    TRENI_RETURN_IF_ERROR(read(s, "template", step.templateName, stepWhere));
    TRENI_RETURN_IF_ERROR(read(s, "origin", step.origin, stepWhere));
    TRENI_RETURN_IF_ERROR(read(s, "outputs", step.outputs, stepWhere));
    if (!s.contains("constants") || !s.contains("inputs") ||
        !s["inputs"].is_array())
      return absl::InvalidArgumentError("plan: " + stepWhere +
                                        " needs constants and inputs");
    TRENI_RETURN_IF_ERROR(constantsFromJson(s["constants"], step.constants));
    for (const json &o : s["inputs"]) {
      if (!o.is_array() || o.size() != 2 || !o[0].is_string() ||
          !o[1].is_number_integer())
        return absl::InvalidArgumentError("plan: bad operand " + o.dump());
      PlanOperand operand;
      std::string kind = o[0].get<std::string>();
      if (kind != "w" && kind != "b")
        return absl::InvalidArgumentError("plan: bad operand kind " + kind);
      operand.kind =
          kind == "w" ? PlanOperand::Kind::Weight : PlanOperand::Kind::Buffer;
      operand.index = o[1].get<int64_t>();
      TRENI_RETURN_IF_ERROR(checkIndex(operand.index,
                                       operand.kind == PlanOperand::Kind::Weight
                                           ? numWeights
                                           : f.buffers.size(),
                                       stepWhere + " operand"));
      step.inputs.push_back(operand);
    }
    for (int64_t index : step.outputs)
      TRENI_RETURN_IF_ERROR(
          checkIndex(index, f.buffers.size(), stepWhere + " output"));
    f.steps.push_back(std::move(step));
  }
  return f;
}
} // namespace

absl::StatusOr<Plan> parsePlan(const std::string &text) {
  json in = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (in.is_discarded() || !in.is_object())
    return absl::InvalidArgumentError("plan: not a JSON object");
  Plan plan;
  TRENI_RETURN_IF_ERROR(read(in, "version", plan.version, "plan"));
  if (plan.version != kPlanVersion)
    return absl::InvalidArgumentError(absl::StrCat("plan: version ",
                                                   plan.version,
                                                   " is not supported (this "
                                                   "build reads version ",
                                                   kPlanVersion, ")"));
  if (!in.contains("model") || !in.contains("weights") ||
      !in["weights"].is_array() || !in.contains("kv_caches") ||
      !in["kv_caches"].is_array() || !in.contains("functions") ||
      !in["functions"].is_array())
    return absl::InvalidArgumentError(
        "plan: needs model, weights, kv_caches and functions");
  TRENI_RETURN_IF_ERROR(constantsFromJson(in["model"], plan.model));
  auto readWeight = [](const json &w, PlanWeight &weight) -> absl::Status {
    TRENI_RETURN_IF_ERROR(read(w, "name", weight.name, "weight"));
    TRENI_RETURN_IF_ERROR(
        read(w, "file", weight.file, "weight " + weight.name));
    TRENI_RETURN_IF_ERROR(
        read(w, "offset", weight.offset, "weight " + weight.name));
    TRENI_RETURN_IF_ERROR(
        read(w, "dtype", weight.dtype, "weight " + weight.name));
    TRENI_RETURN_IF_ERROR(
        read(w, "shape", weight.shape, "weight " + weight.name));
    return absl::OkStatus();
  };
  for (const json &w : in["weights"]) {
    PlanWeight weight;
    TRENI_RETURN_IF_ERROR(readWeight(w, weight));
    if (w.contains("parts")) {
      if (!w["parts"].is_array() || w["parts"].size() < 2)
        return absl::InvalidArgumentError(absl::StrCat(
            "plan: weight ", weight.name, ".parts must list 2+ tensors"));
      for (const json &p : w["parts"]) {
        PlanWeight part;
        TRENI_RETURN_IF_ERROR(readWeight(p, part));
        if (p.contains("parts"))
          return absl::InvalidArgumentError(absl::StrCat(
              "plan: weight ", weight.name, ": parts must not be concats"));
        weight.parts.push_back(std::move(part));
      }
    }
    plan.weights.push_back(std::move(weight));
  }
  for (const json &c : in["kv_caches"]) {
    PlanKvCache cache;
    TRENI_RETURN_IF_ERROR(read(c, "name", cache.name, "kv_cache"));
    TRENI_RETURN_IF_ERROR(read(c, "num_layers", cache.numLayers, "kv_cache"));
    TRENI_RETURN_IF_ERROR(
        read(c, "num_kv_heads", cache.numKvHeads, "kv_cache"));
    TRENI_RETURN_IF_ERROR(read(c, "head_dim", cache.headDim, "kv_cache"));
    TRENI_RETURN_IF_ERROR(read(c, "dtype", cache.dtype, "kv_cache"));
    plan.caches.push_back(std::move(cache));
  }
  for (const json &f : in["functions"]) {
    auto function = parseFunction(f, plan.weights.size());
    if (!function.ok())
      return function.status();
    plan.functions.push_back(std::move(*function));
  }
  return plan;
}

} // namespace treni
