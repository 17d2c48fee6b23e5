//===- KernelSource.cpp - plan steps -> CUDA C++ -------------------------===//
//
// A generated source is, in order: the header comment, common.cuh (element
// types, reductions), the specialisation (constexpr constants, operand types,
// RoPE frequencies) and the template's kernel, whose `TRENI_ENTRY` becomes the
// entry name. The entry is derived from a hash of everything else, so two
// steps with the same source share one kernel (every layer, prefill and
// decode alike): the layer and cache name are launch arguments, not constants.
//
//===----------------------------------------------------------------------===//

#include "codegen/KernelSource.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <set>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "codegen/Rope.h"
#include "support/status.h"

namespace treni {
namespace detail {
/// The text of codegen/kernels/<name>.cuh, generated at build time by
/// codegen/CMakeLists.txt (KernelTemplates.cpp).
struct KernelTemplateText {
  std::string_view name, text;
};
extern const KernelTemplateText kKernelTemplateTexts[];
extern const int kNumKernelTemplateTexts;
} // namespace detail

namespace {

std::optional<std::string_view> templateText(std::string_view name) {
  for (int i = 0; i < detail::kNumKernelTemplateTexts; ++i)
    if (detail::kKernelTemplateTexts[i].name == name)
      return detail::kKernelTemplateTexts[i].text;
  return std::nullopt;
}

/// What a template expects of its step.
struct TemplateSignature {
  std::string name;
  /// Input names in ABI order; an index input (ids, positions) is an i32
  /// buffer, every other input a float buffer or weight.
  std::vector<std::string> inputs;
  std::vector<std::string> outputs;
  bool usesCache = false;
  /// Constants the kernel is specialised with: (key, kind) with kind one of
  /// 'i' (integer), 'f' (float). Extra constants of the step are specialised
  /// too; layer and cache never are.
  std::vector<std::pair<std::string, char>> constants;
};

bool isIndexInput(const std::string &name) {
  return name == "ids" || name == "positions";
}

const std::vector<TemplateSignature> &signatures() {
  static const std::vector<TemplateSignature> table = {
      {"embedding",
       {"ids", "table"},
       {"out"},
       false,
       {{"vocab", 'i'}, {"dim", 'i'}}},
      {"rms_norm",
       {"x", "weight"},
       {"out"},
       false,
       {{"dim", 'i'}, {"group", 'i'}, {"epsilon", 'f'}}},
      {"rope",
       {"x", "positions"},
       {"out"},
       false,
       {{"dim", 'i'}, {"head_dim", 'i'}, {"theta", 'f'}}},
      {"cache_write", {"key", "value", "positions"}, {}, true, {{"dim", 'i'}}},
      {"attention",
       {"query", "positions"},
       {"out"},
       true,
       {{"num_heads", 'i'},
        {"num_kv_heads", 'i'},
        {"head_dim", 'i'},
        {"scale", 'f'}}},
      {"qkv_rope_cache",
       {"qkv", "positions"},
       {"out"},
       true,
       {{"num_heads", 'i'},
        {"num_kv_heads", 'i'},
        {"head_dim", 'i'},
        {"theta", 'f'}}},
      {"qkv_norm_rope_cache",
       {"qkv", "positions", "q_norm", "k_norm"},
       {"out"},
       true,
       {{"num_heads", 'i'},
        {"num_kv_heads", 'i'},
        {"head_dim", 'i'},
        {"theta", 'f'},
        {"epsilon", 'f'}}},
      {"silu", {"x"}, {"out"}, false, {{"dim", 'i'}}},
      {"silu_mul", {"gu"}, {"out"}, false, {{"dim", 'i'}}},
      {"mul", {"a", "b"}, {"out"}, false, {{"dim", 'i'}}},
      {"add", {"a", "b"}, {"out"}, false, {{"dim", 'i'}}},
      {"take_last", {"x"}, {"out"}, false, {{"dim", 'i'}}},
      {"attention_seq1_partial",
       {"query", "positions"},
       {"partials"},
       true,
       {{"num_heads", 'i'},
        {"num_kv_heads", 'i'},
        {"head_dim", 'i'},
        {"scale", 'f'},
        {"num_splits", 'i'}}},
      {"attention_seq1_reduce",
       {"partials"},
       {"out"},
       false,
       {{"num_heads", 'i'}, {"head_dim", 'i'}, {"num_splits", 'i'}}},
      {"gemv",
       {"x", "w", "bias", "norm", "residual"},
       {"out"},
       false,
       {{"n", 'i'}, {"k", 'i'}}},
      {"residual_norm",
       {"residual", "branch", "weight"},
       {"sum", "out"},
       false,
       {{"dim", 'i'}, {"epsilon", 'f'}}},
  };
  return table;
}

const TemplateSignature *findSignature(std::string_view name) {
  for (const TemplateSignature &signature : signatures())
    if (signature.name == name)
      return &signature;
  return nullptr;
}

/// FNV-1a, 64 bits: stable across runs and builds (unlike std::hash).
uint64_t fnv1a(std::string_view text) {
  uint64_t hash = 14695981039346656037ull;
  for (unsigned char c : text)
    hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

/// "head_dim" -> "kHeadDim".
std::string constantName(std::string_view key) {
  std::string name = "k";
  bool upper = true;
  for (char c : key) {
    if (c == '_') {
      upper = true;
      continue;
    }
    name += upper ? char(std::toupper(static_cast<unsigned char>(c))) : c;
    upper = false;
  }
  return name;
}

/// Shortest text that reads back as the same double ("1e-06", "0.125"),
/// whole numbers in full ("500000", not "5e+05").
std::string shortestDouble(double value) {
  if (value == std::trunc(value) && std::abs(value) < 1e15)
    return absl::StrCat(int64_t(value));
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

/// A CUDA float literal that round-trips `value` as fp32 ("1e-06f", "1.0f").
absl::StatusOr<std::string> floatLiteral(double value,
                                         const std::string &what) {
  if (!std::isfinite(value) ||
      std::abs(value) > std::numeric_limits<float>::max())
    return absl::InvalidArgumentError(
        absl::StrCat(what, " = ", value, " is not a finite fp32 value"));
  std::string text = absl::StrFormat("%.9g", float(value));
  if (text.find_first_of(".e") == std::string::npos)
    text += ".0";
  return text + "f";
}

std::string constantText(const PlanConstant &value) {
  if (auto *i = std::get_if<int64_t>(&value))
    return absl::StrCat(*i);
  if (auto *d = std::get_if<double>(&value))
    return shortestDouble(*d);
  if (auto *s = std::get_if<std::string>(&value))
    return *s;
  return std::get<bool>(value) ? "true" : "false";
}

/// The CUDA element type of a plan dtype.
absl::StatusOr<std::string> cudaType(const std::string &dtype) {
  if (dtype == "bf16" || dtype == "f16")
    return dtype;
  if (dtype == "f32")
    return std::string("float");
  return absl::InvalidArgumentError(
      absl::StrCat("dtype '", dtype, "' has no CUDA element type"));
}

int64_t ceilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/// Threads for `width` independent elements: whole warps, at most 256.
int64_t threadsFor(int64_t width) {
  return std::clamp<int64_t>(ceilDiv(width, 32) * 32, 32, 256);
}

/// A launch with one thread per element of a `width`-wide row.
KernelLaunch perElement(int64_t width) {
  KernelLaunch launch;
  launch.threads = threadsFor(width);
  launch.blocksX = ceilDiv(width, launch.threads);
  return launch;
}

absl::Status positive(const PlanStep &step, const char *key, int64_t value) {
  if (value > 0 && value <= std::numeric_limits<int32_t>::max())
    return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("kernel '", step.templateName, "' (", step.origin,
                   "): ", key, " = ", value, " must be in [1, 2^31)"));
}

absl::Status invalid(const PlanStep &step, const std::string &message) {
  return absl::InvalidArgumentError(absl::StrCat(
      "kernel '", step.templateName, "' (", step.origin, "): ", message));
}

/// The `kInvFreq` table of a rope-like step (head_dim, theta, llama3_*),
/// computed on the host exactly as the CPU reference does (codegen/Rope.h).
absl::StatusOr<std::string> ropeDeclarations(const PlanStep &step,
                                             int64_t headDim) {
  TRENI_ASSIGN_OR_RETURN(std::vector<float> invFreq,
                         ropeInverseFrequencies(step, headDim));
  std::vector<std::string> values;
  for (float f : invFreq) {
    TRENI_ASSIGN_OR_RETURN(std::string literal,
                           floatLiteral(f, "a RoPE inverse frequency"));
    values.push_back(literal);
  }
  std::string declarations = absl::StrCat(
      "/// theta^(-2i / kHeadDim)",
      step.constants.count("llama3_factor") ? " with Llama 3 scaling" : "",
      ", from codegen/Rope.cpp.\n",
      "__device__ const float kInvFreq[kHeadDim / 2] = {\n");
  for (size_t i = 0; i < values.size(); i += 6) {
    std::vector<std::string> line(
        values.begin() + i, values.begin() + std::min(values.size(), i + 6));
    absl::StrAppend(&declarations, "    ", absl::StrJoin(line, ", "), ",\n");
  }
  absl::StrAppend(&declarations, "};\n");
  return declarations;
}

/// gemv: 128 threads (fewer for short rows), one 16-byte chunk each per pass.
int64_t gemvThreads(int64_t k) { return std::min<int64_t>(threadsFor(ceilDiv(k, 8)), 128); }

/// gemv rows per block: enough rows that each thread has about four 16-byte
/// loads in flight, but at least ~4 blocks per SM of a large GPU.
int64_t gemvRowsPerBlock(int64_t n, int64_t k) {
  int64_t passes = ceilDiv(ceilDiv(k, 8), gemvThreads(k));
  int64_t rows = passes >= 4 ? 1 : passes >= 2 ? 2 : 4;
  while (rows > 1 && ceilDiv(n, rows) < 528)
    rows /= 2;
  return rows;
}

/// Launch geometry and extra device declarations of one step.
struct Specialisation {
  KernelLaunch launch;
  std::string declarations;
};

absl::StatusOr<Specialisation> specialise(const PlanStep &step) {
  Specialisation result;
  const std::string &name = step.templateName;
  if (name == "rms_norm") {
    TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
    TRENI_ASSIGN_OR_RETURN(int64_t group, step.intConstant("group"));
    TRENI_RETURN_IF_ERROR(positive(step, "dim", dim));
    TRENI_RETURN_IF_ERROR(positive(step, "group", group));
    if (dim % group != 0)
      return invalid(step, absl::StrCat("dim ", dim,
                                        " is not a multiple of group ", group));
    result.launch.threads = threadsFor(group);
    result.launch.blocksX = dim / group;
  } else if (name == "gemv") {
    TRENI_ASSIGN_OR_RETURN(int64_t n, step.intConstant("n"));
    TRENI_ASSIGN_OR_RETURN(int64_t k, step.intConstant("k"));
    TRENI_RETURN_IF_ERROR(positive(step, "n", n));
    TRENI_RETURN_IF_ERROR(positive(step, "k", k));
    for (const char *flag : {"bias", "gated", "norm", "residual"})
      TRENI_RETURN_IF_ERROR(step.boolConstant(flag).status());
    bool gated = *step.boolConstant("gated"), norm = *step.boolConstant("norm");
    if (gated && (n % 2 != 0 || *step.boolConstant("residual")))
      return invalid(step, "gated needs an even n and no residual");
    if (norm != step.constants.count("epsilon") > 0)
      return invalid(step, "epsilon must be given exactly when norm is");
    // A gated block loads a gate row and an up row per output.
    int64_t rowsPerBlock = gemvRowsPerBlock(n, k);
    if (gated)
      rowsPerBlock = std::max<int64_t>(1, rowsPerBlock / 2);
    result.launch.threads = gemvThreads(k);
    result.launch.blocksX = ceilDiv(gated ? n / 2 : n, rowsPerBlock);
    result.launch.rowsInGridY = false;
    result.declarations =
        absl::StrCat("constexpr int kRowsPerBlock = ", rowsPerBlock,
                     "; // outputs per block, from n and k\n",
                     norm ? "" : "constexpr float kEpsilon = 0.0f; // no norm\n");
  } else if (name == "rope") {
    TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
    TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
    TRENI_RETURN_IF_ERROR(positive(step, "dim", dim));
    TRENI_RETURN_IF_ERROR(positive(step, "head_dim", headDim));
    if (headDim % 2 != 0 || dim % headDim != 0)
      return invalid(step, absl::StrCat("head_dim ", headDim,
                                        " must be even and divide dim ", dim));
    TRENI_ASSIGN_OR_RETURN(result.declarations,
                           ropeDeclarations(step, headDim));
    result.launch = perElement(dim / 2);
  } else if (name == "qkv_rope_cache" || name == "qkv_norm_rope_cache") {
    TRENI_ASSIGN_OR_RETURN(int64_t heads, step.intConstant("num_heads"));
    TRENI_ASSIGN_OR_RETURN(int64_t kvHeads, step.intConstant("num_kv_heads"));
    TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
    TRENI_RETURN_IF_ERROR(positive(step, "num_heads", heads));
    TRENI_RETURN_IF_ERROR(positive(step, "num_kv_heads", kvHeads));
    TRENI_RETURN_IF_ERROR(positive(step, "head_dim", headDim));
    if (headDim % 2 != 0)
      return invalid(step, absl::StrCat("head_dim ", headDim, " must be even"));
    // One block per q and k head of a row; it also copies one v head.
    result.launch.threads = threadsFor(headDim / 2);
    result.launch.blocksX = heads + kvHeads;
    TRENI_ASSIGN_OR_RETURN(result.declarations,
                           ropeDeclarations(step, headDim));
  } else if (name == "attention") {
    TRENI_ASSIGN_OR_RETURN(int64_t heads, step.intConstant("num_heads"));
    TRENI_ASSIGN_OR_RETURN(int64_t kvHeads, step.intConstant("num_kv_heads"));
    TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
    TRENI_RETURN_IF_ERROR(positive(step, "num_heads", heads));
    TRENI_RETURN_IF_ERROR(positive(step, "num_kv_heads", kvHeads));
    TRENI_RETURN_IF_ERROR(positive(step, "head_dim", headDim));
    if (heads % kvHeads != 0)
      return invalid(step, absl::StrCat("num_heads ", heads,
                                        " is not a multiple of num_kv_heads ",
                                        kvHeads));
    if (headDim > 1024)
      return invalid(step, absl::StrCat("head_dim ", headDim, " > 1024"));
    result.launch.threads = 128;
    result.launch.blocksX = heads;
    result.launch.sharedBytesPerPosition = sizeof(float); // one score each
  } else if (name == "attention_seq1_partial" ||
             name == "attention_seq1_reduce") {
    TRENI_ASSIGN_OR_RETURN(int64_t heads, step.intConstant("num_heads"));
    TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
    TRENI_ASSIGN_OR_RETURN(int64_t splits, step.intConstant("num_splits"));
    TRENI_RETURN_IF_ERROR(positive(step, "num_heads", heads));
    TRENI_RETURN_IF_ERROR(positive(step, "head_dim", headDim));
    TRENI_RETURN_IF_ERROR(positive(step, "num_splits", splits));
    result.launch.rowsInGridY = false; // one query row; grid never moves
    if (name == "attention_seq1_reduce") {
      result.launch.threads = threadsFor(headDim);
      result.launch.blocksX = heads;
    } else {
      TRENI_ASSIGN_OR_RETURN(int64_t kvHeads, step.intConstant("num_kv_heads"));
      TRENI_RETURN_IF_ERROR(positive(step, "num_kv_heads", kvHeads));
      if (heads % kvHeads != 0)
        return invalid(step, absl::StrCat("num_heads ", heads,
                                          " is not a multiple of num_kv_heads ",
                                          kvHeads));
      // Static shared memory: every warp's (max, sum, acc) for the group.
      const int64_t threads = 128, group = heads / kvHeads;
      int64_t shared = (threads / 32) * group * (headDim + 2) * 4;
      if (shared > 48 * 1024)
        return invalid(step, absl::StrCat("a group of ", group, " heads of ",
                                          headDim, " needs ", shared,
                                          " bytes of shared memory (> 48 KiB)"));
      result.launch.threads = threads;
      result.launch.blocksX = kvHeads * splits;
    }
  } else if (name == "residual_norm") {
    TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
    TRENI_RETURN_IF_ERROR(positive(step, "dim", dim));
    // Up to 1024 threads, at least four columns each (loads in flight).
    result.launch.threads = std::clamp<int64_t>(ceilDiv(ceilDiv(dim, 4), 32) * 32, 32, 1024);
    result.launch.blocksX = 1; // one block per row (grid y)
  } else {
    // embedding, cache_write, silu, silu_mul, mul, add, take_last: one
    // thread per element of a row.
    TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
    TRENI_RETURN_IF_ERROR(positive(step, "dim", dim));
    result.launch = perElement(dim);
    result.launch.rowsInGridY = name != "take_last";
  }
  return result;
}

/// Checks operand counts and kinds; returns the CUDA element type of each
/// float operand by name (inputs, outputs and "cache").
absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
operandTypes(const Plan &plan, const PlanFunction &function,
             const PlanStep &step, const TemplateSignature &signature,
             const std::string &activation) {
  if (step.inputs.size() != signature.inputs.size() ||
      step.outputs.size() != signature.outputs.size())
    return invalid(
        step, absl::StrCat("expects ", signature.inputs.size(), " inputs and ",
                           signature.outputs.size(), " outputs, the plan has ",
                           step.inputs.size(), " and ", step.outputs.size()));
  auto bufferDtype = [&](int64_t index) -> absl::StatusOr<std::string> {
    if (index < 0 || index >= int64_t(function.buffers.size()))
      return invalid(step, absl::StrCat("buffer ", index, " out of range"));
    return function.buffers[index].dtype;
  };
  std::vector<std::pair<std::string, std::string>> types;
  for (size_t i = 0; i < step.inputs.size(); ++i) {
    const std::string &input = signature.inputs[i];
    const PlanOperand &operand = step.inputs[i];
    std::string dtype = activation; // weights: converted at upload
    if (operand.kind == PlanOperand::Kind::Buffer) {
      TRENI_ASSIGN_OR_RETURN(dtype, bufferDtype(operand.index));
    } else if (isIndexInput(input)) {
      return invalid(step,
                     absl::StrCat("input '", input,
                                  "' must be an i32 buffer, not a weight"));
    }
    if (isIndexInput(input) != (dtype == "i32"))
      return invalid(step, absl::StrCat("input '", input, "' has dtype ", dtype,
                                        isIndexInput(input)
                                            ? ", expected i32"
                                            : ", expected a float type"));
    if (isIndexInput(input))
      continue;
    TRENI_ASSIGN_OR_RETURN(std::string type, cudaType(dtype));
    types.emplace_back(input, type);
  }
  for (size_t i = 0; i < step.outputs.size(); ++i) {
    TRENI_ASSIGN_OR_RETURN(std::string dtype, bufferDtype(step.outputs[i]));
    auto type = cudaType(dtype);
    if (!type.ok())
      return invalid(step, absl::StrCat("output '", signature.outputs[i],
                                        "': ", type.status().message()));
    types.emplace_back(signature.outputs[i], *type);
  }
  if (signature.usesCache) {
    TRENI_ASSIGN_OR_RETURN(std::string cacheName, step.stringConstant("cache"));
    const PlanKvCache *cache = plan.cache(cacheName);
    if (!cache)
      return invalid(step, absl::StrCat("no KV cache '", cacheName, "'"));
    TRENI_ASSIGN_OR_RETURN(std::string type, cudaType(cache->dtype));
    types.emplace_back("cache", type);
  }
  return types;
}

/// The kernel's parameter list as the template must spell it.
std::string parameterList(const TemplateSignature &signature) {
  std::vector<std::string> parameters;
  for (const std::string &input : signature.inputs)
    parameters.push_back(isIndexInput(input)
                             ? absl::StrCat("const int *", input)
                             : absl::StrCat("const ", input, "_type *", input));
  for (const std::string &output : signature.outputs)
    parameters.push_back(absl::StrCat(output, "_type *", output));
  if (signature.usesCache) {
    parameters.push_back("cache_type *keyCache");
    parameters.push_back("cache_type *valueCache");
  }
  parameters.push_back("int rows");
  return absl::StrJoin(parameters, ", ");
}

/// Whitespace-insensitive "does `text` contain `needle`".
bool containsIgnoringSpace(std::string_view text, std::string_view needle) {
  auto squash = [](std::string_view s) {
    std::string out;
    for (char c : s)
      if (!std::isspace(static_cast<unsigned char>(c)))
        out += c;
    return out;
  };
  return squash(text).find(squash(needle)) != std::string::npos;
}

} // namespace

std::vector<std::string> kernelTemplateNames() {
  std::vector<std::string> names;
  for (const TemplateSignature &signature : signatures())
    names.push_back(signature.name);
  return names;
}

absl::StatusOr<std::string> activationDtype(const Plan &plan) {
  if (plan.caches.empty())
    return absl::InvalidArgumentError(
        "plan has no KV cache, so no activation dtype");
  const std::string &dtype = plan.caches[0].dtype;
  if (dtype != "bf16" && dtype != "f16" && dtype != "f32")
    return absl::InvalidArgumentError(
        absl::StrCat("KV cache '", plan.caches[0].name, "' has dtype '", dtype,
                     "'; expected bf16, f16 or f32"));
  return dtype;
}

absl::StatusOr<KernelSpec> generateKernel(const Plan &plan,
                                          const PlanFunction &function,
                                          const PlanStep &step) {
  const TemplateSignature *signature = findSignature(step.templateName);
  if (!signature)
    return absl::UnimplementedError(absl::StrCat(
        "no CUDA kernel template '", step.templateName, "' (", step.origin, ")",
        step.templateName == "gemm" ? ": GEMMs run on cuBLASLt" : "",
        "; templates: ", absl::StrJoin(kernelTemplateNames(), ", ")));
  std::optional<std::string_view> body = templateText(signature->name);
  std::optional<std::string_view> common = templateText("common");
  if (!body || !common)
    return absl::InternalError(absl::StrCat(
        "kernel template '", signature->name, "' was not embedded"));
  if (!containsIgnoringSpace(
          *body, absl::StrCat("TRENI_ENTRY(", parameterList(*signature), ")")))
    return absl::InternalError(absl::StrCat(
        "codegen/kernels/", signature->name,
        ".cuh does not declare TRENI_ENTRY(", parameterList(*signature), ")"));

  TRENI_ASSIGN_OR_RETURN(std::string activation, activationDtype(plan));
  TRENI_ASSIGN_OR_RETURN(
      auto types, operandTypes(plan, function, step, *signature, activation));
  TRENI_ASSIGN_OR_RETURN(Specialisation specialisation, specialise(step));

  // Header and constants. Layer and cache are launch arguments: leaving them
  // out lets every layer share one kernel.
  std::string header = absl::StrCat("// treni kernel: ", step.templateName,
                                    " (from ", step.origin, ")");
  std::string constants;
  for (const auto &[key, value] : step.constants) {
    if (signature->usesCache && (key == "layer" || key == "cache"))
      continue;
    absl::StrAppend(&header, " ", key, "=", constantText(value));
    std::string name = constantName(key);
    if (auto *i = std::get_if<int64_t>(&value)) {
      bool fits = *i >= std::numeric_limits<int32_t>::min() &&
                  *i <= std::numeric_limits<int32_t>::max();
      absl::StrAppend(&constants, "constexpr ", fits ? "int " : "long long ",
                      name, " = ", *i, fits ? "" : "ll", ";\n");
    } else if (auto *d = std::get_if<double>(&value)) {
      TRENI_ASSIGN_OR_RETURN(std::string literal,
                             floatLiteral(*d, absl::StrCat("constant ", key)));
      absl::StrAppend(&constants, "constexpr float ", name, " = ", literal,
                      ";\n");
    } else if (auto *b = std::get_if<bool>(&value)) {
      absl::StrAppend(&constants, "constexpr bool ", name, " = ",
                      *b ? "true" : "false", ";\n");
    } else {
      return invalid(step, absl::StrCat("string constant '", key,
                                        "' cannot specialise a kernel"));
    }
  }
  // The signature's constants must be present with the right kind.
  for (const auto &[key, kind] : signature->constants) {
    if (kind == 'i') {
      TRENI_RETURN_IF_ERROR(step.intConstant(key).status());
    } else {
      TRENI_RETURN_IF_ERROR(step.floatConstant(key).status());
    }
  }
  absl::StrAppend(&header, " dtype=", activation, "\n");

  std::string source = header;
  absl::StrAppend(&source, "\n", std::string(*common), "\n");
  absl::StrAppend(&source, "//===-- Specialisation ", std::string(52, '-'),
                  "===//\n\n");
  absl::StrAppend(&source,
                  "constexpr int kThreads = ", specialisation.launch.threads,
                  ";\n", constants);
  for (const auto &[operand, type] : types)
    absl::StrAppend(&source, "using ", operand, "_type = ", type, ";\n");
  if (!specialisation.declarations.empty())
    absl::StrAppend(&source, specialisation.declarations);
  absl::StrAppend(&source, "\n", std::string(*body));

  KernelSpec spec;
  spec.entry =
      absl::StrFormat("treni_%s_%016x", step.templateName, fnv1a(source));
  spec.source = absl::StrReplaceAll(source, {{"TRENI_ENTRY", spec.entry}});
  spec.launch = specialisation.launch;
  spec.usesCache = signature->usesCache;
  return spec;
}

absl::StatusOr<std::vector<KernelSpec>> generateAllKernels(const Plan &plan) {
  std::vector<KernelSpec> kernels;
  std::set<std::string> seen;
  for (const PlanFunction &function : plan.functions)
    for (const PlanStep &step : function.steps) {
      if (step.templateName == "gemm")
        continue; // cuBLASLt
      TRENI_ASSIGN_OR_RETURN(KernelSpec kernel,
                             generateKernel(plan, function, step));
      if (seen.insert(kernel.entry).second)
        kernels.push_back(std::move(kernel));
    }
  return kernels;
}

} // namespace treni
