//===- KernelSource.cpp - plan steps -> CUDA C++ -------------------------===//
//
// A generated source is, in order: the header comment, common.cuh (element
// types, reductions), the specialisation (constexpr constants, operand types,
// the launch rule's constants, RoPE frequencies), the entry's shared parts
// and the template's kernel, whose `TRENI_ENTRY` becomes the entry name. The
// entry is derived from a hash of everything else, so two steps with the same
// source share one kernel (every layer, prefill and decode alike): the layer
// and cache name are launch arguments, not constants.
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

/// The `kInvFreq` table of a rope-like step (head_dim, rotary_dim, theta,
/// llama3_*), computed on the host exactly as the CPU reference does
/// (codegen/Rope.h): one frequency per rotated pair.
absl::StatusOr<std::string> ropeDeclarations(const PlanStep &step,
                                             int64_t headDim) {
  TRENI_ASSIGN_OR_RETURN(int64_t rotaryDim, ropeRotaryDim(step, headDim));
  TRENI_ASSIGN_OR_RETURN(std::vector<float> invFreq,
                         ropeInverseFrequencies(step, rotaryDim));
  // Whole-head RoPE (and so every qkv_ template) keeps the text it had.
  const char *width =
      step.constants.count("rotary_dim") ? "kRotaryDim" : "kHeadDim";
  std::vector<std::string> values;
  for (float f : invFreq) {
    TRENI_ASSIGN_OR_RETURN(std::string literal,
                           floatLiteral(f, "a RoPE inverse frequency"));
    values.push_back(literal);
  }
  std::string declarations = absl::StrCat(
      "/// theta^(-2i / ", width, ")",
      step.constants.count("llama3_factor") ? " with Llama 3 scaling" : "",
      ", from codegen/Rope.cpp.\n", "__device__ const float kInvFreq[", width,
      " / 2] = {\n");
  for (size_t i = 0; i < values.size(); i += 6) {
    std::vector<std::string> line(
        values.begin() + i, values.begin() + std::min(values.size(), i + 6));
    absl::StrAppend(&declarations, "    ", absl::StrJoin(line, ", "), ",\n");
  }
  absl::StrAppend(&declarations, "};\n");
  return declarations;
}

/// Checks operand kinds (the counts are checkStep's); returns the CUDA
/// element type of each float operand by name (inputs, outputs and "cache").
absl::StatusOr<std::vector<std::pair<std::string, std::string>>>
operandTypes(const Plan &plan, const PlanFunction &function,
             const PlanStep &step, const KernelTemplate &kernel,
             const std::string &activation) {
  auto bufferDtype = [&](int64_t index) -> absl::StatusOr<std::string> {
    if (index < 0 || index >= int64_t(function.buffers.size()))
      return invalidStep(step, absl::StrCat("buffer ", index, " out of range"));
    return function.buffers[index].dtype;
  };
  std::vector<std::pair<std::string, std::string>> types;
  for (size_t i = 0; i < step.inputs.size(); ++i) {
    const KernelOperand &input = kernel.inputs[i];
    const PlanOperand &operand = step.inputs[i];
    std::string dtype = activation; // weights: converted at upload
    if (operand.kind == PlanOperand::Kind::Buffer) {
      TRENI_ASSIGN_OR_RETURN(dtype, bufferDtype(operand.index));
    } else if (input.index) {
      return invalidStep(step,
                         absl::StrCat("input '", input.name,
                                      "' must be an i32 buffer, not a weight"));
    }
    if (input.index != (dtype == "i32"))
      return invalidStep(
          step, absl::StrCat("input '", input.name, "' has dtype ", dtype,
                             input.index ? ", expected i32"
                                         : ", expected a float type"));
    if (input.index)
      continue;
    TRENI_ASSIGN_OR_RETURN(std::string type, cudaType(dtype));
    types.emplace_back(input.name, type);
  }
  for (size_t i = 0; i < step.outputs.size(); ++i) {
    TRENI_ASSIGN_OR_RETURN(std::string dtype, bufferDtype(step.outputs[i]));
    auto type = cudaType(dtype);
    if (!type.ok())
      return invalidStep(step, absl::StrCat("output '", kernel.outputs[i],
                                            "': ", type.status().message()));
    types.emplace_back(kernel.outputs[i], *type);
  }
  if (kernel.usesCache) {
    TRENI_ASSIGN_OR_RETURN(std::string cacheName, step.stringConstant("cache"));
    const PlanKvCache *cache = plan.cache(cacheName);
    if (!cache)
      return invalidStep(step, absl::StrCat("no KV cache '", cacheName, "'"));
    TRENI_ASSIGN_OR_RETURN(std::string type, cudaType(cache->dtype));
    types.emplace_back("cache", type);
  }
  return types;
}

/// "constexpr int kDim = 896;" for a step constant or a launch rule's.
absl::StatusOr<std::string> constexprDeclaration(const PlanStep &step,
                                                 const std::string &name,
                                                 const PlanConstant &value) {
  if (auto *i = std::get_if<int64_t>(&value)) {
    bool fits = *i >= std::numeric_limits<int32_t>::min() &&
                *i <= std::numeric_limits<int32_t>::max();
    return absl::StrCat("constexpr ", fits ? "int " : "long long ", name, " = ",
                        *i, fits ? "" : "ll", ";");
  }
  if (auto *d = std::get_if<double>(&value)) {
    TRENI_ASSIGN_OR_RETURN(std::string literal,
                           floatLiteral(*d, absl::StrCat("constant ", name)));
    return absl::StrCat("constexpr float ", name, " = ", literal, ";");
  }
  if (auto *b = std::get_if<bool>(&value))
    return absl::StrCat("constexpr bool ", name, " = ", *b ? "true" : "false",
                        ";");
  return invalidStep(step, absl::StrCat("string constant '", name,
                                        "' cannot specialise a kernel"));
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

std::string kernelParameterList(const KernelTemplate &kernel) {
  std::vector<std::string> parameters;
  for (const KernelOperand &input : kernel.inputs)
    parameters.push_back(input.index ? absl::StrCat("const int *", input.name)
                                     : absl::StrCat("const ", input.name,
                                                    "_type *", input.name));
  for (const std::string &output : kernel.outputs)
    parameters.push_back(absl::StrCat(output, "_type *", output));
  if (kernel.usesCache) {
    parameters.push_back("cache_type *keyCache");
    parameters.push_back("cache_type *valueCache");
    parameters.push_back("KvPages pages");
  }
  parameters.push_back("int rows");
  return absl::StrJoin(parameters, ", ");
}

std::vector<std::string> kernelTemplateNames() {
  std::vector<std::string> names;
  for (const KernelTemplate &kernel : kernelTemplates())
    if (kernel.hasCudaTemplate())
      names.push_back(kernel.name);
  return names;
}

std::optional<std::string_view> kernelFileText(std::string_view name) {
  for (int i = 0; i < detail::kNumKernelTemplateTexts; ++i)
    if (detail::kKernelTemplateTexts[i].name == name)
      return detail::kKernelTemplateTexts[i].text;
  return std::nullopt;
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
  return generateKernel(plan, function, step, std::nullopt);
}

namespace {
/// generateKernel; `tiledRuns`: the runtime launches the kernel on a paged
/// function's rows with a tile list (KvPages::runs), so a template that
/// shares K/V tiles among rows may run there (attention_flash).
absl::StatusOr<KernelSpec>
generateKernel(const Plan &plan, const PlanFunction &function,
               const PlanStep &step,
               const std::optional<KernelGeometry> &override, bool tiledRuns);
} // namespace

absl::StatusOr<KernelSpec>
generateKernel(const Plan &plan, const PlanFunction &function,
               const PlanStep &step,
               const std::optional<KernelGeometry> &override) {
  return generateKernel(plan, function, step, override, false);
}

absl::StatusOr<KernelSpec>
generateStepChunkAttentionKernel(const Plan &plan, const PlanFunction &function,
                                 const PlanStep &partial,
                                 const PlanStep &reduce) {
  if (partial.templateName != "attention_seq1_partial" ||
      reduce.templateName != "attention_seq1_reduce" ||
      partial.outputs.size() != 1 || reduce.inputs.size() != 1 ||
      reduce.outputs.size() != 1 ||
      reduce.inputs[0].kind != PlanOperand::Kind::Buffer ||
      reduce.inputs[0].index != partial.outputs[0])
    return absl::InvalidArgumentError(absl::StrCat(
        "a prompt chunk's flash attention stands in for an "
        "attention_seq1_partial step and the attention_seq1_reduce of its "
        "partials, not for '",
        partial.templateName, "' and '", reduce.templateName, "' (",
        partial.origin, ")"));
  TRENI_ASSIGN_OR_RETURN(std::string activation, activationDtype(plan));
  TRENI_ASSIGN_OR_RETURN(int64_t headDim, partial.intConstant("head_dim"));
  const int64_t out = reduce.outputs[0];
  if (activation == "f32" || !flashAttentionHeadDim(headDim) || out < 0 ||
      out >= int64_t(function.buffers.size()) ||
      function.buffers[out].dtype != activation)
    return absl::UnimplementedError(absl::StrCat(
        "attention_flash needs a 16-bit cache and output and a head_dim that "
        "is a multiple of 16 <= 128 (",
        partial.origin, ")"));
  PlanStep step = partial;
  step.templateName = "attention_flash";
  step.constants.erase("num_splits");
  step.outputs = reduce.outputs;
  return generateKernel(plan, function, step, std::nullopt, true);
}

namespace {
absl::StatusOr<KernelSpec>
generateKernel(const Plan &plan, const PlanFunction &function,
               const PlanStep &step,
               const std::optional<KernelGeometry> &override, bool tiledRuns) {
  const KernelTemplate *kernel = findKernelTemplate(step.templateName);
  if (!kernel || !kernel->hasCudaTemplate())
    return absl::UnimplementedError(absl::StrCat(
        "no CUDA kernel template '", step.templateName, "' (", step.origin, ")",
        step.templateName == "gemm" ? ": GEMMs run on cuBLASLt" : "",
        "; templates: ", absl::StrJoin(kernelTemplateNames(), ", ")));
  std::optional<std::string_view> body = kernelFileText(kernel->name);
  std::optional<std::string_view> common = kernelFileText("common");
  if (!body || !common)
    return absl::InternalError(
        absl::StrCat("kernel template '", kernel->name, "' was not embedded"));
  std::string parameters = kernelParameterList(*kernel);
  if (!containsIgnoringSpace(*body,
                             absl::StrCat("TRENI_ENTRY(", parameters, ")")))
    return absl::InternalError(
        absl::StrCat("codegen/kernels/", kernel->name,
                     ".cuh does not declare TRENI_ENTRY(", parameters, ")"));
  std::string parts;
  for (const std::string &part : kernel->parts) {
    std::optional<std::string_view> text = kernelFileText(part);
    if (!text)
      return absl::InternalError(
          absl::StrCat("kernel part '", part, "' was not embedded"));
    absl::StrAppend(&parts, "\n", std::string(*text));
  }

  if (kernel->usesCache && pagedCache(function) && !kernel->pagedCache &&
      !tiledRuns)
    return absl::UnimplementedError(
        absl::StrCat("kernel template '", kernel->name, "' (", step.origin,
                     ") reads a contiguous KV cache; @", function.name,
                     " addresses a paged one"));
  TRENI_ASSIGN_OR_RETURN(std::string activation, activationDtype(plan));
  TRENI_RETURN_IF_ERROR(checkStep(*kernel, step));
  TRENI_ASSIGN_OR_RETURN(
      auto types, operandTypes(plan, function, step, *kernel, activation));
  TRENI_ASSIGN_OR_RETURN(KernelGeometry ruled, kernel->geometry(step));
  const KernelGeometry &geometry = override ? *override : ruled;

  // Header and constants. Layer and cache are launch arguments: leaving them
  // out lets every layer share one kernel.
  std::string header = absl::StrCat("// treni kernel: ", step.templateName,
                                    " (from ", step.origin, ")");
  std::string constants;
  for (const auto &[key, value] : step.constants) {
    if (!kernel->constant(key)->specialise)
      continue;
    absl::StrAppend(&header, " ", key, "=", constantText(value));
    TRENI_ASSIGN_OR_RETURN(
        std::string declaration,
        constexprDeclaration(step, constantName(key), value));
    absl::StrAppend(&constants, declaration, "\n");
  }
  absl::StrAppend(&header, " dtype=", activation, "\n");

  std::string declarations;
  for (const DerivedConstant &constant : geometry.constants) {
    TRENI_ASSIGN_OR_RETURN(
        std::string declaration,
        constexprDeclaration(step, constant.name, constant.value));
    absl::StrAppend(&declarations, declaration, " // ", constant.why, "\n");
  }
  if (kernel->ropeFrequencies) {
    TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
    TRENI_ASSIGN_OR_RETURN(std::string frequencies,
                           ropeDeclarations(step, headDim));
    absl::StrAppend(&declarations, frequencies);
  }

  std::string source = header;
  absl::StrAppend(&source, "\n", std::string(*common), "\n");
  absl::StrAppend(&source, "//===-- Specialisation ", std::string(52, '-'),
                  "===//\n\n");
  absl::StrAppend(&source, "constexpr int kThreads = ", geometry.launch.threads,
                  ";\n", constants);
  for (const auto &[operand, type] : types)
    absl::StrAppend(&source, "using ", operand, "_type = ", type, ";\n");
  absl::StrAppend(&source, declarations, parts, "\n", std::string(*body));

  KernelSpec spec;
  spec.entry =
      absl::StrFormat("treni_%s_%016x", step.templateName, fnv1a(source));
  spec.source = absl::StrReplaceAll(source, {{"TRENI_ENTRY", spec.entry}});
  spec.launch = geometry.launch;
  spec.usesCache = kernel->usesCache;
  return spec;
}
} // namespace

absl::StatusOr<KernelSpec> generateGemmRowsKernel(const Plan &plan,
                                                  const PlanFunction &function,
                                                  const PlanStep &gemm,
                                                  int64_t rowTiles) {
  if (gemm.templateName != "gemm" || gemm.inputs.size() < 2 ||
      gemm.inputs[0].kind != PlanOperand::Kind::Buffer)
    return absl::InvalidArgumentError(
        absl::StrCat("gemm_rows stands in for a gemm step with a buffer x, "
                     "not for '",
                     gemm.templateName, "' (", gemm.origin, ")"));
  TRENI_ASSIGN_OR_RETURN(std::string activation, activationDtype(plan));
  TRENI_ASSIGN_OR_RETURN(int64_t k, gemm.intConstant("k"));
  TRENI_ASSIGN_OR_RETURN(bool bias, gemm.boolConstant("bias"));
  const int64_t x = gemm.inputs[0].index;
  if (activation == "f32" || k % 32 != 0 || x < 0 ||
      x >= int64_t(function.buffers.size()) ||
      function.buffers[x].dtype != activation)
    return absl::UnimplementedError(absl::StrCat(
        "gemm_rows needs 16-bit x and w of one type and k a multiple of 32 (",
        gemm.origin, ")"));
  PlanStep step = gemm;
  step.templateName = "gemm_rows";
  step.constants["row_tiles"] = rowTiles;
  if (!bias)
    step.inputs.push_back(gemm.inputs[1]);
  return generateKernel(plan, function, step);
}

bool pagedCache(const PlanFunction &function) {
  return function.name == "step" || function.name == "embed";
}

const PlanStep *chunkAttentionReduce(const PlanFunction &function,
                                     const PlanStep &partial) {
  if (!pagedCache(function) ||
      partial.templateName != "attention_seq1_partial" ||
      partial.outputs.size() != 1)
    return nullptr;
  for (const PlanStep &step : function.steps)
    if (step.templateName == "attention_seq1_reduce" &&
        step.inputs.size() == 1 &&
        step.inputs[0].kind == PlanOperand::Kind::Buffer &&
        step.inputs[0].index == partial.outputs[0])
      return &step;
  return nullptr;
}

absl::StatusOr<std::vector<KernelSpec>> generateAllKernels(const Plan &plan) {
  std::vector<KernelSpec> kernels;
  std::set<std::string> seen;
  for (const PlanFunction &function : plan.functions) {
    for (const PlanStep &step : function.steps) {
      if (step.templateName == "gemm") {
        // cuBLASLt, or in a batched step of few rows gemm_rows
        for (int64_t rowTiles = 1; pagedCache(function) && rowTiles <= 4;
             rowTiles *= 2) {
          auto kernel = generateGemmRowsKernel(plan, function, step, rowTiles);
          if (absl::IsUnimplemented(kernel.status()))
            break;
          TRENI_RETURN_IF_ERROR(kernel.status());
          if (seen.insert(kernel->entry).second)
            kernels.push_back(*std::move(kernel));
        }
        continue;
      }
      TRENI_ASSIGN_OR_RETURN(KernelSpec kernel,
                             generateKernel(plan, function, step));
      if (seen.insert(kernel.entry).second)
        kernels.push_back(std::move(kernel));
      if (const PlanStep *reduce = chunkAttentionReduce(function, step)) {
        // A batched step's prompt-chunk rows take attention_flash.
        auto flash =
            generateStepChunkAttentionKernel(plan, function, step, *reduce);
        if (absl::IsUnimplemented(flash.status()))
          continue;
        TRENI_RETURN_IF_ERROR(flash.status());
        if (seen.insert(flash->entry).second)
          kernels.push_back(*std::move(flash));
      }
    }
  }
  return kernels;
}

} // namespace treni
