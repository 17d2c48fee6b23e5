//===- cpu_executor.cpp - the fp32 reference executor --------------------===//
//
// The arena is the plan's own: every buffer sits at its planned byte offset
// times `scale` = 4 / (smallest element size), so a bf16 plan's buffers fit
// their fp32 copies and any aliasing bug of treni-plan-buffers shows up as
// wrong logits here.
//
//===----------------------------------------------------------------------===//

#include "runtime/exec/cpu_executor.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "codegen/Rope.h"
#include "support/status.h"
#include "frontends/safetensors/safetensors.h"
#include "runtime/exec/cpu_kernels.h"
#include "runtime/exec/step_inputs.h"
#include "runtime/exec/weights.h"
#include "support/dtype.h"

namespace treni {
namespace {

/// Operand access for one step of one call.
class StepContext {
public:
  StepContext(const PlanFunction &function, const PlanStep &step,
              int64_t tokens, int64_t scale, float *arena,
              const std::vector<std::vector<float>> &weights)
      : function(function), step(step), tokens(tokens), scale(scale),
        arena(arena), weights(weights) {}

  const float *in(size_t i) const {
    const PlanOperand &operand = step.inputs[i];
    if (operand.kind == PlanOperand::Kind::Weight)
      return weights[operand.index].data();
    return address(operand.index);
  }
  const int32_t *indices(size_t i) const {
    return reinterpret_cast<const int32_t *>(in(i));
  }
  float *out(size_t i) const { return address(step.outputs[i]); }
  /// Rows of input buffer i (the token count when dynamic).
  int64_t rows(size_t i) const {
    const PlanBuffer &buffer = function.buffers[step.inputs[i].index];
    return buffer.dynamic ? tokens : buffer.shape[0];
  }
  absl::Status expectInputs(size_t count, size_t outputs) const {
    if (step.inputs.size() != count || step.outputs.size() != outputs)
      return absl::InvalidArgumentError(absl::StrCat(
          "kernel '", step.templateName, "' (", step.origin, ") expects ",
          count, " inputs and ", outputs, " outputs, the plan has ",
          step.inputs.size(), " and ", step.outputs.size()));
    for (size_t i = 0; i < count; ++i)
      if (step.inputs[i].kind == PlanOperand::Kind::Buffer &&
          function.buffers[step.inputs[i].index].shape.empty())
        return absl::InvalidArgumentError("kernel input of rank 0");
    return absl::OkStatus();
  }

private:
  float *address(int64_t buffer) const {
    return arena + function.bufferOffset(buffer, tokens) * scale / 4;
  }

  const PlanFunction &function;
  const PlanStep &step;
  int64_t tokens, scale;
  float *arena;
  const std::vector<std::vector<float>> &weights;
};

} // namespace

int32_t argmax(absl::Span<const float> logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) -
                 logits.begin());
}

absl::StatusOr<std::unique_ptr<CpuExecutor>>
CpuExecutor::create(Plan plan, const std::string &modelDir, int64_t maxSeq) {
  if (maxSeq <= 0)
    return absl::InvalidArgumentError("max-seq must be positive");
  std::unique_ptr<CpuExecutor> executor(new CpuExecutor());
  executor->maxSeq_ = maxSeq;
  auto vocab = plan.model.find("vocab_size");
  if (vocab == plan.model.end() ||
      !std::holds_alternative<int64_t>(vocab->second))
    return absl::InvalidArgumentError("plan: model.vocab_size missing");
  executor->vocabSize_ = std::get<int64_t>(vocab->second);

  TRENI_ASSIGN_OR_RETURN(auto checkpoint, Checkpoint::open(modelDir));
  TRENI_ASSIGN_OR_RETURN(auto tensors, matchPlanWeights(plan, *checkpoint));
  for (const WeightTensors &parts : tensors) {
    // A concatenation is its parts back to back (row-major, dimension 0).
    int64_t total = 0;
    for (const TensorInfo *info : parts)
      total += info->numElements();
    std::vector<float> data(total);
    float *next = data.data();
    for (const TensorInfo *info : parts) {
      convertToF32(info->dtype, checkpoint->data(*info).data(), next,
                   info->numElements());
      next += info->numElements();
    }
    executor->weights_.push_back(std::move(data));
  }
  for (const PlanKvCache &cache : plan.caches) {
    size_t size = size_t(maxSeq) * cache.numKvHeads * cache.headDim;
    executor->keys_[cache.name].assign(cache.numLayers,
                                       std::vector<float>(size));
    executor->values_[cache.name].assign(cache.numLayers,
                                         std::vector<float>(size));
  }
  for (const char *name : {"prefill", "decode"})
    if (!plan.function(name))
      return absl::InvalidArgumentError(
          absl::StrCat("plan has no @", name, " function"));
  executor->plan_ = std::move(plan);
  return executor;
}

int64_t CpuExecutor::weightBytes() const {
  int64_t total = 0;
  for (const auto &w : weights_)
    total += w.size() * sizeof(float);
  return total;
}

absl::StatusOr<std::vector<float>>
CpuExecutor::prefill(absl::Span<const int32_t> ids, int64_t startPosition) {
  if (ids.empty())
    return absl::InvalidArgumentError("prefill needs at least one token");
  return run(*plan_.function("prefill"), ids, startPosition);
}

absl::StatusOr<std::vector<float>> CpuExecutor::decode(int32_t id,
                                                       int64_t position) {
  return run(*plan_.function("decode"), {&id, 1}, position);
}

absl::StatusOr<std::vector<float>>
CpuExecutor::run(const PlanFunction &function, absl::Span<const int32_t> ids,
                 int64_t startPosition) {
  int64_t tokens = ids.size();
  TRENI_RETURN_IF_ERROR(
      checkStepInputs(ids, startPosition, maxSeq_, vocabSize_));
  if (function.inputs.size() != 2 || function.outputs.size() != 1)
    return absl::InvalidArgumentError(
        absl::StrCat("@", function.name, " must take (ids, positions) and "
                     "return logits"));
  for (int64_t input : function.inputs) {
    const PlanBuffer &buffer = function.buffers[input];
    if (!buffer.dynamic && buffer.shape != std::vector<int64_t>{tokens})
      return absl::InvalidArgumentError(absl::StrCat(
          "@", function.name, " takes ", buffer.shape[0], " tokens, got ",
          tokens));
  }

  int64_t minBytes = 4;
  for (const PlanBuffer &buffer : function.buffers)
    minBytes = std::min(minBytes, dtypeBytes(buffer.dtype));
  int64_t scale = 4 / minBytes;
  arena_.assign((function.arenaBytes(tokens) * scale + 3) / 4, 0.0f);
  auto words = [&](int64_t buffer) {
    return reinterpret_cast<int32_t *>(
        arena_.data() + function.bufferOffset(buffer, tokens) * scale / 4);
  };
  std::copy(ids.begin(), ids.end(), words(function.inputs[0]));
  for (int64_t i = 0; i < tokens; ++i)
    words(function.inputs[1])[i] = int32_t(startPosition + i);

  for (const PlanStep &step : function.steps) {
    StepContext c(function, step, tokens, scale, arena_.data(), weights_);
    const std::string &name = step.templateName;
    if (name == "embedding") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(2, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
      cpu::embedding(c.indices(0), c.rows(0), c.in(1), dim, c.out(0));
    } else if (name == "rms_norm") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(2, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
      TRENI_ASSIGN_OR_RETURN(int64_t group, step.intConstant("group"));
      TRENI_ASSIGN_OR_RETURN(double eps, step.floatConstant("epsilon"));
      cpu::rmsNorm(c.in(0), c.rows(0), dim, c.in(1), group, eps, c.out(0));
    } else if (name == "gemm") {
      TRENI_ASSIGN_OR_RETURN(bool bias, step.boolConstant("bias"));
      TRENI_RETURN_IF_ERROR(c.expectInputs(bias ? 3 : 2, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t n, step.intConstant("n"));
      TRENI_ASSIGN_OR_RETURN(int64_t k, step.intConstant("k"));
      cpu::gemm(c.in(0), c.rows(0), k, c.in(1), n, bias ? c.in(2) : nullptr,
                c.out(0));
    } else if (name == "gemv") {
      // treni.matvec: the reference is the unfused composition, so CPU logits
      // are identical with and without treni-fuse-matvec.
      TRENI_RETURN_IF_ERROR(c.expectInputs(5, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t n, step.intConstant("n"));
      TRENI_ASSIGN_OR_RETURN(int64_t k, step.intConstant("k"));
      TRENI_ASSIGN_OR_RETURN(bool bias, step.boolConstant("bias"));
      TRENI_ASSIGN_OR_RETURN(bool gated, step.boolConstant("gated"));
      TRENI_ASSIGN_OR_RETURN(bool norm, step.boolConstant("norm"));
      TRENI_ASSIGN_OR_RETURN(bool residual, step.boolConstant("residual"));
      if (c.rows(0) != 1 || (gated && (n % 2 != 0 || residual)))
        return absl::InvalidArgumentError(absl::StrCat(
            "kernel 'gemv' (", step.origin,
            "): one row, and gated needs an even n and no residual"));
      const float *x = c.in(0);
      std::vector<float> normed, y;
      if (norm) {
        TRENI_ASSIGN_OR_RETURN(double eps, step.floatConstant("epsilon"));
        normed.resize(k);
        cpu::rmsNorm(x, 1, k, c.in(3), k, eps, normed.data());
        x = normed.data();
      }
      bool epilogue = gated || residual;
      if (epilogue)
        y.resize(n);
      float *out = epilogue ? y.data() : c.out(0);
      cpu::gemm(x, 1, k, c.in(1), n, bias ? c.in(2) : nullptr, out);
      if (gated)
        cpu::siluMul(y.data(), 1, n / 2, c.out(0));
      else if (residual)
        cpu::add(c.in(4), y.data(), n, c.out(0));
    } else if (name == "rope") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(2, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
      TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
      TRENI_ASSIGN_OR_RETURN(auto invFreq, ropeInverseFrequencies(step, headDim));
      cpu::rope(c.in(0), c.rows(0), dim, headDim, c.indices(1), invFreq,
                c.out(0));
    } else if (name == "cache_write" || name == "attention" ||
               name == "qkv_rope_cache" || name == "qkv_norm_rope_cache") {
      TRENI_ASSIGN_OR_RETURN(std::string cacheName, step.stringConstant("cache"));
      TRENI_ASSIGN_OR_RETURN(int64_t layer, step.intConstant("layer"));
      auto keys = keys_.find(cacheName);
      if (keys == keys_.end() || layer < 0 ||
          layer >= int64_t(keys->second.size()))
        return absl::InvalidArgumentError(absl::StrCat(
            "kernel '", name, "': no layer ", layer, " in cache '", cacheName,
            "'"));
      float *keyCache = keys->second[layer].data();
      float *valueCache = values_[cacheName][layer].data();
      if (name == "qkv_rope_cache" || name == "qkv_norm_rope_cache") {
        bool norm = name == "qkv_norm_rope_cache";
        TRENI_RETURN_IF_ERROR(c.expectInputs(norm ? 4 : 2, 1));
        TRENI_ASSIGN_OR_RETURN(int64_t heads, step.intConstant("num_heads"));
        TRENI_ASSIGN_OR_RETURN(int64_t kvHeads, step.intConstant("num_kv_heads"));
        TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
        double eps = 0;
        if (norm) {
          TRENI_ASSIGN_OR_RETURN(eps, step.floatConstant("epsilon"));
        }
        TRENI_ASSIGN_OR_RETURN(auto invFreq, ropeInverseFrequencies(step, headDim));
        cpu::qkvRopeCache(c.in(0), c.rows(0), heads, kvHeads, headDim,
                          c.indices(1), invFreq, norm ? c.in(2) : nullptr,
                          norm ? c.in(3) : nullptr, eps, c.out(0), keyCache,
                          valueCache);
      } else if (name == "cache_write") {
        TRENI_RETURN_IF_ERROR(c.expectInputs(3, 0));
        TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
        cpu::cacheWrite(c.in(0), c.in(1), c.rows(0), dim, c.indices(2),
                        keyCache, valueCache);
      } else {
        TRENI_RETURN_IF_ERROR(c.expectInputs(2, 1));
        TRENI_ASSIGN_OR_RETURN(int64_t heads, step.intConstant("num_heads"));
        TRENI_ASSIGN_OR_RETURN(int64_t kvHeads, step.intConstant("num_kv_heads"));
        TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
        TRENI_ASSIGN_OR_RETURN(double attnScale, step.floatConstant("scale"));
        cpu::attention(c.in(0), c.rows(0), heads, kvHeads, headDim,
                       c.indices(1), keyCache, valueCache, attnScale, c.out(0));
      }
    } else if (name == "attention_seq1_partial") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(2, 1));
      TRENI_ASSIGN_OR_RETURN(std::string cacheName,
                             step.stringConstant("cache"));
      TRENI_ASSIGN_OR_RETURN(int64_t layer, step.intConstant("layer"));
      auto keys = keys_.find(cacheName);
      if (keys == keys_.end() || layer < 0 ||
          layer >= int64_t(keys->second.size()))
        return absl::InvalidArgumentError(
            absl::StrCat("kernel '", name, "': no layer ", layer, " in cache '",
                         cacheName, "'"));
      TRENI_ASSIGN_OR_RETURN(int64_t heads, step.intConstant("num_heads"));
      TRENI_ASSIGN_OR_RETURN(int64_t kvHeads, step.intConstant("num_kv_heads"));
      TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
      TRENI_ASSIGN_OR_RETURN(int64_t splits, step.intConstant("num_splits"));
      TRENI_ASSIGN_OR_RETURN(double attnScale, step.floatConstant("scale"));
      if (c.rows(0) != 1)
        return absl::InvalidArgumentError(
            "kernel 'attention_seq1_partial' takes one query row");
      cpu::attentionSeq1Partial(c.in(0), heads, kvHeads, headDim,
                                c.indices(1)[0], keys->second[layer].data(),
                                values_[cacheName][layer].data(), attnScale,
                                splits, c.out(0));
    } else if (name == "attention_seq1_reduce") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(1, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t heads, step.intConstant("num_heads"));
      TRENI_ASSIGN_OR_RETURN(int64_t headDim, step.intConstant("head_dim"));
      TRENI_ASSIGN_OR_RETURN(int64_t splits, step.intConstant("num_splits"));
      cpu::attentionSeq1Reduce(c.in(0), heads, headDim, splits, c.out(0));
    } else if (name == "silu") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(1, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
      cpu::silu(c.in(0), c.rows(0) * dim, c.out(0));
    } else if (name == "silu_mul") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(1, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
      cpu::siluMul(c.in(0), c.rows(0), dim, c.out(0));
    } else if (name == "mul" || name == "add") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(2, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
      (name == "mul" ? cpu::mul : cpu::add)(c.in(0), c.in(1), c.rows(0) * dim,
                                            c.out(0));
    } else if (name == "residual_norm") {
      // The fused kernel's reference is the unfused composition, so CPU
      // logits are bit-identical with and without treni-fuse-residual-norm.
      TRENI_RETURN_IF_ERROR(c.expectInputs(3, 2));
      TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
      TRENI_ASSIGN_OR_RETURN(double eps, step.floatConstant("epsilon"));
      cpu::add(c.in(0), c.in(1), c.rows(0) * dim, c.out(0));
      cpu::rmsNorm(c.out(0), c.rows(0), dim, c.in(2), dim, eps, c.out(1));
    } else if (name == "take_last") {
      TRENI_RETURN_IF_ERROR(c.expectInputs(1, 1));
      TRENI_ASSIGN_OR_RETURN(int64_t dim, step.intConstant("dim"));
      std::copy_n(c.in(0) + (c.rows(0) - 1) * dim, dim, c.out(0));
    } else {
      return absl::UnimplementedError(absl::StrCat(
          "the CPU executor has no kernel '", name, "' (", step.origin, ")"));
    }
  }
  const float *logits = reinterpret_cast<const float *>(words(function.outputs[0]));
  return std::vector<float>(logits, logits + vocabSize_);
}

} // namespace treni
